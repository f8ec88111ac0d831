"""Stripe failing for a while: an outage the tests switch on and off through ``/_sim/config``.

``{"outage": {"status": 503, "paths": ["/v1/billing/meter_events"], "remaining": 3}}`` answers
matching API requests with Stripe's error shape instead of handling them: every path when
``paths`` is empty, ``remaining`` requests or (``-1``, the default) until ``{"outage": null}``.
The answer carries ``Stripe-Should-Retry: false`` so the SDK reports the failure at once instead
of sleeping through its own retries: the caller sees what it would after Stripe's retries ran out.
"""

from typing import Any

from stripe_sim.errors import StripeError

RETRY_HEADER = {"Stripe-Should-Retry": "false"}


def outage_error(config: Any, method: str, path: str) -> StripeError | None:
    """The error to answer this request with while an outage is on, else None. Call under the
    store's lock: a counted outage is used up one matching request at a time."""
    outage = getattr(config, "outage", None)
    if not outage:
        return None
    paths = outage.get("paths") or []
    methods = [m.upper() for m in outage.get("methods") or []]
    if paths and not any(path.startswith(prefix) for prefix in paths):
        return None
    if methods and method.upper() not in methods:
        return None
    remaining = int(outage.get("remaining", -1))
    if remaining == 0:
        return None
    if remaining > 0:
        outage["remaining"] = remaining - 1
    status = int(outage.get("status", 503))
    return StripeError(status, "api_error", "The simulator is having an outage (injected by a test).")
