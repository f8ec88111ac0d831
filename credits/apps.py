from django.apps import AppConfig


class CreditsConfig(AppConfig):
    name = "credits"
    verbose_name = "Credits"

    def ready(self) -> None:
        # Credits registers its handlers for the Stripe events billing receives.
        from credits import webhooks  # noqa: F401
