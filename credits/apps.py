from django.apps import AppConfig


class CreditsConfig(AppConfig):
    name = "credits"
    verbose_name = "Credits"

    def ready(self) -> None:
        # Credits registers its handlers for the Stripe events billing receives (webhooks) and
        # for billing's allowance hooks (receivers).
        from billing.webhooks import receivers as billing_receivers
        from credits import receivers, webhooks  # noqa: F401

        # Billing's receiver listens to the event types registered when it connected; credits
        # adds its own (`payment_intent.succeeded`), so it connects again (idempotent).
        billing_receivers.connect()

        # Credits composes its own billing notices (low credits, a declined auto-recharge).
        from credits.services import alerts  # noqa: F401
