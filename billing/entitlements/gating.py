"""Where entitlements meet the product: a view decorator, a DRF permission, and the error that
services raise when a limit stops an action."""

import uuid
from functools import wraps

from django.shortcuts import render
from rest_framework import exceptions, permissions

from billing import entitlements, metering
from billing.entitlements import ratelimit
from billing.entitlements.decisions import Decision
from common.errors import ServiceError
from teams.access import client_ip, get_org_for_api, get_org_for_user

MESSAGES = {
    entitlements.Reason.NOT_INCLUDED: "{name} is not included in your plan.",
    entitlements.Reason.LIMIT_REACHED: "You have reached your plan's limit of {limit} {unit}s.",
    entitlements.Reason.QUOTA_EXCEEDED: "You have used all {limit} {unit}s of this period.",
    entitlements.Reason.UNKNOWN_FEATURE: "This feature is not available.",
    entitlements.Reason.RESTRICTED: "Your last payment failed, so nothing new can be created "
    "until the card on file is updated.",
}


def describe(decision: Decision) -> str:
    template = MESSAGES.get(decision.reason, "This is not available on your plan.")
    return template.format(
        name=decision.name or decision.feature.replace("_", " ").capitalize(),
        limit=f"{decision.limit:,}" if decision.limit is not None else "",
        unit=decision.unit or "unit",
    )


class EntitlementError(ServiceError):
    """A refused action, carrying the decision so pages and the API can offer the upgrade."""

    status = 402

    def __init__(self, decision: Decision, message: str = ""):
        super().__init__(decision.reason, message or describe(decision))
        self.decision = decision

    def as_dict(self) -> dict:
        d = self.decision
        body = {
            "code": self.code,
            "message": self.message,
            "feature": d.feature,
            "limit": d.limit,
            "used": d.used,
            "requested": d.requested,
        }
        if d.upgrade:
            body["upgrade"] = {
                "kind": d.upgrade.kind,
                "key": d.upgrade.key,
                "name": d.upgrade.name,
                "url": d.upgrade.url,
            }
        return body


def raise_unless_allowed(decision: Decision) -> Decision:
    if not decision.allowed:
        raise EntitlementError(decision)
    return decision


def upgrade_response(request, organization, error: EntitlementError, *, status: int = 402):
    """The upgrade prompt: a fragment for htmx requests, a page otherwise."""
    context = {"organization": organization, "decision": error.decision, "message": error.message}
    template = "billing/upgrade.html#prompt" if request.htmx else "billing/upgrade.html"
    return render(request, template, context, status=status)


def requires_feature(feature: str, requested: int = 1):
    """Decorate an organization view (`org_slug` in its URL) that needs `feature`."""

    def decorate(view):
        @wraps(view)
        def wrapper(request, org_slug, *args, **kwargs):
            organization, _ = get_org_for_user(request, org_slug)
            decision = entitlements.check(organization, feature, requested)
            if not decision.allowed:
                return upgrade_response(request, organization, EntitlementError(decision))
            return view(request, org_slug, *args, **kwargs)

        return wrapper

    return decorate


def requires_feature_permission(feature: str):
    """A DRF permission class for API views that need `feature`."""

    class RequiresFeature(permissions.BasePermission):
        def has_permission(self, request, view) -> bool:
            organization = get_org_for_api(request)
            decision = entitlements.check(organization, feature)
            if not decision.allowed:
                raise EntitlementError(decision)
            return True

    RequiresFeature.__name__ = f"Requires_{feature}"
    return RequiresFeature


class CountsApiCalls(permissions.BasePermission):
    """Each authenticated API call uses one unit of `api_calls`; past the quota it is refused.

    A retried request that repeats its `Idempotency-Key` header is counted once.
    """

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return True  # authentication answers first, with 401
        organization = get_org_for_api(request)
        key = request.headers.get("Idempotency-Key")
        key = f"api:{request.method}:{request.path}:{key}" if key else f"api:{uuid.uuid4().hex}"
        raise_unless_allowed(entitlements.consume(organization, "api_calls", 1, idempotency_key=key[:255]))
        return True


def rate_limit_message(decision) -> str:
    if decision.bucket.startswith("org:"):
        who = "your organization's plan allows"
    elif decision.bucket.startswith("address:"):
        who = "an address without an API key may make"
    else:
        who = "each API key or person may make"
    return f"Too many requests: {who} {decision.limit:,} API requests a minute."


def _public(view) -> bool:
    return not any(isinstance(p, permissions.IsAuthenticated) for p in view.get_permissions())


class RateLimited(permissions.BasePermission):
    """The plan's requests per minute, for the organization (`api_rate`) and for each API key or
    person (`api_key_rate`), shared by every process: past either, 429 with `Retry-After`.
    Every API view lists it (tests/billing/test_usage_ratelimit.py walks them) before permissions
    that record usage, so refused calls use none. The `RateLimit-*` headers are added to the
    response by `teams.middleware.ApiHeaders`."""

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            if not _public(view):
                return True  # authentication answers first, with 401
            # A public endpoint (the schema): limited per address.
            decision = ratelimit.address_hit(address=client_ip(request) or "unknown")
        else:
            principal = getattr(request.user, "api_key", None)
            caller = f"key:{principal.pk}" if principal is not None else f"user:{request.user.pk}"
            decision = ratelimit.rate_hit(organization=get_org_for_api(request), caller=caller)
        request._request.ratelimit_headers = decision.headers()
        if decision.allowed:
            return True
        if decision.unavailable:  # and RATE_LIMIT_FAIL_OPEN is off; Retry-After comes with it
            message = "Rate limits cannot be checked right now; retry shortly."
            raise ServiceError("rate_limit_unavailable", message, status=503)
        # The message names the limit; when to retry is in Retry-After and RateLimit-Reset.
        exc = exceptions.Throttled(detail=rate_limit_message(decision))
        exc.wait = decision.retry_after
        raise exc


class MetersApiCalls(permissions.BasePermission):
    """Each authenticated API call is one unit of `api_calls`: counted in Redis and written to
    the usage log in batches (`billing.api_calls`), so it shows on the usage page and feeds the
    quota without a database write per call; past the quota the call is refused unless the
    plan bills overage. A retried request repeating its `Idempotency-Key` is counted once."""

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return True
        organization = get_org_for_api(request)
        key = request.headers.get("Idempotency-Key")
        key = f"api:{request.method}:{request.path}:{key}"[:255] if key else None
        raise_unless_allowed(metering.api_call_count(organization=organization, event_id=key))
        return True
