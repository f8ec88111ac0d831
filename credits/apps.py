from django.apps import AppConfig


class CreditsConfig(AppConfig):
    name = "credits"
    verbose_name = "Credits"

    def ready(self) -> None:
        # Billing receives Stripe's events; credits applies the ones about what it sold.
        from credits import webhooks

        webhooks.register()
