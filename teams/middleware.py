"""Headers every API response carries."""

API_PREFIX = "/api/"


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
