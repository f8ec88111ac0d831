"""Headers every API response carries, the request id, request latencies, and a clean 503 when
the database goes away."""

import logging
import time

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode
from django_htmx.http import HttpResponseClientRedirect

from common import logs
from teams import metrics
from teams.access import TwoFactorRequired

log = logging.getLogger("tally.db")

API_PREFIX = "/api/"


class RequestId:
    """First in the chain: every log line of the request carries its id, and so does the
    answer (`X-Request-ID`), so that a person quoting it to support finds the lines."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        rid = logs.request_id_from(request.headers.get(logs.HEADER))
        token = logs.request_id.set(rid)
        try:
            response = self.get_response(request)
        finally:
            logs.request_id.reset(token)
        response[logs.HEADER] = rid
        return response


class RequestMetrics:
    """The time each request took, by the view that answered it (its URL name: one series per
    view, not per path; a path no view matched counts as `unresolved`)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        view = (match.view_name or match._func_path) if match is not None else "unresolved"
        metrics.observe_request(view=view, method=request.method, seconds=time.perf_counter() - started)
        return response


class ApiHeaders:
    """Under /api/: the `RateLimit-*` fields the rate limiter decided for this request
    (`billing.entitlements.gating.RateLimited` leaves them on the request), and `Cache-Control: no-store` on
    JSON, which holds balances and keys' data that no shared cache should keep."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not request.path.startswith(API_PREFIX):
            return response
        for name, value in getattr(request, "ratelimit_headers", {}).items():
            if name not in response:
                response[name] = value
        if "json" in response.get("Content-Type", ""):
            response["Cache-Control"] = "no-store"
        return response


class DatabaseUnavailable:
    """The database went away in the middle of a request (a restart, a failover, a dropped
    connection): answer a clean 503 with `Retry-After` instead of a 500. Django closes the broken
    connection when the request ends, and the health check of the next request's connection
    (`CONN_HEALTH_CHECKS`) opens a new one, so the service recovers without a restart."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        log.warning("database unavailable during %s %s: %r", request.method, request.path, exception)
        if request.path.startswith(API_PREFIX):
            response = JsonResponse(
                {
                    "code": "service_unavailable",
                    "message": "The database is unavailable; please retry shortly.",
                },
                status=503,
            )
        else:
            response = HttpResponse(
                "Tally is briefly unavailable; please try again in a moment.",
                status=503,
                content_type="text/plain; charset=utf-8",
            )
        response["Retry-After"] = "5"
        return response


class TwoFactorRequiredRedirect:
    """An organization's page refused for want of a second factor sends the person to the page
    that says why, with the way to set one up."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, TwoFactorRequired) or request.path.startswith(API_PREFIX):
            return None
        target = reverse("two_factor_required") + "?" + urlencode({"org": exception.organization.slug})
        if getattr(request, "htmx", False):
            return HttpResponseClientRedirect(target)
        return redirect(target)
