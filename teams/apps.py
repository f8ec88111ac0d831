from django.apps import AppConfig


class TeamsConfig(AppConfig):
    name = "teams"
    verbose_name = "Teams"

    def ready(self) -> None:
        # Deployment checks live beside the settings they guard.
        from config import checks  # noqa: F401
        from teams import receivers  # noqa: F401
