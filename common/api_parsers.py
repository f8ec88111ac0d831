"""The one request body the API reads: JSON, of bounded size and nesting depth."""

from django.conf import settings
from rest_framework import exceptions, parsers, status
from rest_framework.utils import json

# Deep enough for any metadata a client means to send; far below Python's recursion limit,
# so neither parsing nor anything that walks the result can overflow the stack.
MAX_JSON_DEPTH = 32


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


class JsonTooDeep(exceptions.ParseError):
    default_detail = f"The JSON body is nested too deeply (at most {MAX_JSON_DEPTH} levels)."
    default_code = "json_too_deep"


def _depth_exceeds(data, limit: int) -> bool:
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > limit:
                return True
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return False


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing a body over `API_MAX_BODY_BYTES` before reading it whole and a
    document nested deeper than `MAX_JSON_DEPTH` (Python's parser would raise RecursionError)."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        limit = settings.API_MAX_BODY_BYTES
        request = parser_context.get("request")
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0) if request is not None else 0
        except ValueError:
            declared = 0
        too_large = PayloadTooLarge(f"The request body is over the limit of {limit:,} bytes.")
        if declared > limit:
            raise too_large
        body = stream.read(limit + 1)
        if len(body) > limit:
            raise too_large
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            data = json.loads(body.decode(encoding))
        except RecursionError:
            raise JsonTooDeep() from None
        except (ValueError, UnicodeDecodeError) as error:
            raise exceptions.ParseError(f"The body is not valid JSON: {error}") from None
        if _depth_exceeds(data, MAX_JSON_DEPTH):
            raise JsonTooDeep()
        return data
