"""One JSON error shape for the whole API: {"code", "message", "fields"?}."""

import stripe
from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from teams.errors import ServiceError

_CODES = {
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


def _flatten(detail) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        return {
            field: [str(m) for m in (messages if isinstance(messages, list) else [messages])]
            for field, messages in detail.items()
        }
    return {"non_field_errors": [str(m) for m in detail]}


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
        body = {"code": code, "message": "Some fields are invalid.", "fields": _flatten(exc.detail)}
        response.status_code = status.HTTP_400_BAD_REQUEST
    else:
        body = {"code": code, "message": str(exc.detail)}
    response.data = body
    return response
