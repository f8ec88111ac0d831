from django.apps import AppConfig


class CreditsConfig(AppConfig):
    name = "credits"
    verbose_name = "Credits"

    def ready(self) -> None:
        # Credits registers its handlers for the Stripe events billing receives (webhooks) and
        # for billing's allowance hooks (receivers).
        from credits import receivers, webhooks  # noqa: F401
