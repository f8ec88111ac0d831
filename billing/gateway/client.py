import stripe
from django.conf import settings


def stripe_client() -> stripe.StripeClient:
    """A client for Stripe, or for the simulator when `STRIPE_API_HOST` points at it.

    Settings are read on every call so that tests can point a single run at a fresh simulator.
    """
    host = getattr(settings, "STRIPE_API_HOST", "")
    base = {"api": host} if host else {}
    return stripe.StripeClient(settings.STRIPE_SECRET_KEY, base_addresses=base, max_network_retries=2)
