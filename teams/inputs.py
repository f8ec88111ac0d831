"""Text that PostgreSQL cannot store, found before it reaches the database.

PostgreSQL refuses NUL (U+0000) in text and jsonb, and a lone UTF-16 surrogate (U+D800-U+DFFF,
which JSON's \\uXXXX escapes can produce) cannot be encoded as UTF-8 at all. Either would end a
request in a database or encoding error, so inputs are checked for them where they arrive.
"""

import re
from collections.abc import Iterator

from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework import serializers

from common.errors import ServiceError

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
UNSTORABLE_MESSAGE = "Contains a character that cannot be stored (NUL or a lone surrogate)."


def _strings(value, path: str) -> Iterator[tuple[str, str]]:
    # Recursion is bounded by the JSON parser's nesting limit.
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            yield child, str(key)
            yield from _strings(item, child)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}.{index}" if path else str(index))


def unstorable_path(value, path: str = "") -> str | None:
    """The path ("a.b.0") of the first string or key in `value` PostgreSQL cannot store, or None."""
    for where, text in _strings(value, path):
        if UNSTORABLE.search(text):
            return where
    return None


def storable(value):
    """DRF validator for JSON-valued fields (dicts, lists): every key and string storable."""
    if unstorable_path(value) is not None:
        raise serializers.ValidationError(UNSTORABLE_MESSAGE, code="invalid_characters")
    return value


MAX_IDEMPOTENCY_KEY = 200


def idempotency_key_header(request, *, required: bool) -> str | None:
    """The request's `Idempotency-Key` header, checked: present when required, at most
    MAX_IDEMPOTENCY_KEY characters (room for the prefixes services add) and storable."""
    key = request.headers.get("Idempotency-Key")
    if key is None and not required:
        return None
    if not (key or "").strip():
        if required:
            raise ServiceError(
                "idempotency_key_required",
                "Send an Idempotency-Key header, so that a retried request is not charged twice.",
                field="Idempotency-Key",
            )
        raise ServiceError(
            "invalid_idempotency_key", "An Idempotency-Key must not be blank.", field="Idempotency-Key"
        )
    if len(key) > MAX_IDEMPOTENCY_KEY:
        raise ServiceError(
            "invalid_idempotency_key",
            f"Keep the Idempotency-Key under {MAX_IDEMPOTENCY_KEY + 1} characters.",
            field="Idempotency-Key",
        )
    if UNSTORABLE.search(key):
        raise ServiceError("invalid_idempotency_key", UNSTORABLE_MESSAGE, field="Idempotency-Key")
    return key


class UnstorableInputMiddleware:
    """A NUL in a query string or form field is never valid input: refuse the request with a 400
    naming the parameter, before any view hands it to the database. (Lone surrogates cannot
    arrive this way: Django decodes these with replacement characters.)"""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        fields = {
            name: [UNSTORABLE_MESSAGE]
            for name, values in request.GET.lists()
            if UNSTORABLE.search(name) or any(UNSTORABLE.search(v) for v in values)
        }
        if not fields and request.content_type == "application/x-www-form-urlencoded":
            fields = {
                name: [UNSTORABLE_MESSAGE]
                for name, values in request.POST.lists()
                if UNSTORABLE.search(name) or any(UNSTORABLE.search(v) for v in values)
            }
        if fields:
            # Names are echoed back readable: a NUL in a name is shown escaped.
            fields = {name.encode("unicode_escape").decode(): m for name, m in fields.items()}
            body = {"code": "invalid_characters", "message": UNSTORABLE_MESSAGE, "fields": fields}
            if request.path.startswith("/api/"):
                return JsonResponse(body, status=400)
            return HttpResponse(
                f"Bad request: {UNSTORABLE_MESSAGE}", status=400, content_type="text/plain; charset=utf-8"
            )
        return self.get_response(request)
