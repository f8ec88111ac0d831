"""One JSON error shape for the whole API: {"code", "message", "fields"?}."""

import stripe
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from common.api_parsers import JsonTooDeep, PayloadTooLarge
from common.errors import ServiceError

# Subclasses before their bases: the first match names the error.
_CODES = {
    JsonTooDeep: "json_too_deep",
    PayloadTooLarge: "payload_too_large",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.ParseError: "malformed_request",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
    exceptions.ValidationError: "invalid_request",
}


def _flatten(detail, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as {"field.sub.0": ["message", ...]}: readable paths, never a
    Python repr of a nested structure."""
    if isinstance(detail, dict):
        flat: dict[str, list[str]] = {}
        for key, value in detail.items():
            for path, messages in _flatten(value, f"{prefix}.{key}" if prefix else str(key)).items():
                flat.setdefault(path, []).extend(messages)
        return flat
    if isinstance(detail, list) and any(isinstance(item, dict | list) for item in detail):
        flat = {}
        for index, item in enumerate(detail):
            if item:
                flat.update(_flatten(item, f"{prefix}.{index}" if prefix else str(index)))
        return flat
    messages = detail if isinstance(detail, list) else [detail]
    return {prefix or "non_field_errors": [str(m) for m in messages]}


def _summary(fields: dict[str, list[str]]) -> str:
    field, messages = next(iter(fields.items()))
    first = messages[0] if messages else "Invalid."
    if field == "non_field_errors":
        return first
    more = len(fields) - 1
    return f"{field}: {first}" + (f" (and {more} more field{'s' if more > 1 else ''})" if more else "")


def exception_handler(exc, context):
    if isinstance(exc, ServiceError):
        return Response(exc.as_dict(), status=exc.status)
    if isinstance(exc, stripe.StripeError):
        # Nothing was changed on our side; the client may retry.
        return Response(
            {
                "code": "payment_provider_unavailable",
                "message": "Stripe did not answer as expected; please retry shortly.",
            },
            status=status.HTTP_502_BAD_GATEWAY,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = next((c for cls, c in _CODES.items() if isinstance(exc, cls)), "error")
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        body = {"code": code, "message": _summary(fields) if fields else "Invalid input.", "fields": fields}
        response.status_code = status.HTTP_400_BAD_REQUEST
    else:
        body = {"code": code, "message": str(exc.detail)}
    response.data = body
    return response


_STATUS_ERRORS = {
    400: ("bad_request", "The request could not be understood."),
    401: ("not_authenticated", "Authentication credentials were not provided."),
    403: ("permission_denied", "You do not have permission to do this."),
    404: ("not_found", "No such API endpoint or object; check the path and any id in it."),
    405: ("method_not_allowed", "This endpoint does not take that method."),
    413: ("payload_too_large", "The request body is too large."),
    429: ("rate_limited", "Too many requests; retry later."),
    500: ("server_error", "Something went wrong on our side; it has been logged. Please retry later."),
}


def json_error_for_status(status_code: int) -> JsonResponse:
    code, message = _STATUS_ERRORS.get(
        status_code, ("server_error" if status_code >= 500 else "error", "The request failed.")
    )
    return JsonResponse({"code": code, "message": message}, status=status_code)


class ApiErrorMiddleware:
    """Under /api/, every error is the API's JSON error, including those no API view produced:
    unknown paths and ids that match no route (404), Django's own 400/403/405 pages, and the
    500 page of an unhandled exception (already logged by Django)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            # A DRF response already carries our error shape, in the format it negotiated.
            not isinstance(response, Response)
            and request.path.startswith("/api/")
            and response.status_code >= 400
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            replacement = json_error_for_status(response.status_code)
            for header in ("Allow", "Retry-After", "WWW-Authenticate"):
                if header in response:
                    replacement[header] = response[header]
            return replacement
        return response
