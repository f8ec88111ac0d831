from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        import stripe
        from django.conf import settings

        # One place points the SDK at Stripe, or at the simulator for tests and the demo.
        stripe.api_key = settings.STRIPE_SECRET_KEY
        if getattr(settings, "STRIPE_API_HOST", ""):
            stripe.api_base = settings.STRIPE_API_HOST

        # Counters (team members, API rate), the seat receivers and the Stripe event handlers
        # register themselves on import; then the webhook receiver listens to the handled events.
        from billing import billing_details, discounts  # noqa: F401
        from billing.entitlements import counters, ratelimit  # noqa: F401
        from billing.seats import receivers  # noqa: F401
        from billing.subscriptions import (  # noqa: F401
            addon_payments,
            addons,
            checkout,
            payments,
            refunds,
            sync,
        )
        from billing.webhooks import receivers as webhook_receivers

        webhook_receivers.connect()
        from billing.entitlements.engine import invalidate_catalog
        from teams.cache import on_recover

        # An invalidation dropped while Redis was away must not leave stale entitlements served.
        on_recover(invalidate_catalog)
