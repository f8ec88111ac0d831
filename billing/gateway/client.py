import stripe
from django.conf import settings


class _HttpClient(stripe.RequestsClient):
    """Stripe's own HTTP client, also retrying a 429: Stripe asks callers to back off and retry
    rate-limited requests, and every retry carries the first attempt's idempotency key, so a
    retried call is never applied twice."""

    def _should_retry(self, response, api_connection_error, num_retries, max_network_retries):
        if response is not None and response[1] == 429 and num_retries < (max_network_retries or 0):
            headers = response[2]
            if not (headers is not None and headers.get("stripe-should-retry") == "false"):
                return True
        return super()._should_retry(response, api_connection_error, num_retries, max_network_retries)


def stripe_client() -> stripe.StripeClient:
    """A client for Stripe, or for the simulator when `STRIPE_API_HOST` points at it.

    Settings are read on every call so that tests can point a single run at a fresh simulator.
    A call that does not answer within `STRIPE_TIMEOUT_SECONDS` is retried (twice, with back-off)
    under the same idempotency key, then fails with `stripe.APIConnectionError`.
    """
    host = getattr(settings, "STRIPE_API_HOST", "")
    base = {"api": host} if host else {}
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses=base,
        max_network_retries=2,
        http_client=_HttpClient(timeout=settings.STRIPE_TIMEOUT_SECONDS),
    )
