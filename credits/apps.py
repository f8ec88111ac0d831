from django.apps import AppConfig


class CreditsConfig(AppConfig):
    name = "credits"
    verbose_name = "Credits"

    def ready(self) -> None:
        # Handlers for billing's hooks register themselves on import.
        from credits import receivers  # noqa: F401
