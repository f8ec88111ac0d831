"""Stripe's error shape: ``{"error": {"type", "code", "param", "message", ...}}`` and status."""

from typing import Any


class StripeError(Exception):
    """Raised anywhere in a handler; the app turns it into Stripe's JSON error response."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.code = code
        self.param = param
        self.extra = extra or {}

    def body(self, request_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            error["param"] = self.param
        error["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        error.update(self.extra)
        return {"error": error}


def invalid_param(param: str | None, message: str, *, code: str | None = None) -> StripeError:
    return StripeError(400, "invalid_request_error", message, code=code, param=param)


def invalid(message: str, *, code: str | None = None, param: str | None = None) -> StripeError:
    return StripeError(400, "invalid_request_error", message, code=code, param=param)


def missing(kind: str, object_id: str, param: str = "id") -> StripeError:
    return StripeError(
        404,
        "invalid_request_error",
        f"No such {kind}: '{object_id}'",
        code="resource_missing",
        param=param,
    )


def card_error(
    message: str, *, code: str, decline_code: str | None = None, extra: dict[str, Any] | None = None
) -> StripeError:
    details = dict(extra or {})
    if decline_code:
        details["decline_code"] = decline_code
    return StripeError(402, "card_error", message, code=code, extra=details)


def unauthorized(message: str) -> StripeError:
    return StripeError(401, "invalid_request_error", message)
