"""System checks that refuse configurations which would lose money or leak secrets."""

from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.security, deploy=False)
def dangerous_combinations(app_configs, **kwargs) -> list[Error]:
    errors = []
    live = settings.STRIPE_LIVE_MODE
    if live and settings.DEBUG:
        errors.append(
            Error(
                "DJANGO_DEBUG is on while STRIPE_SECRET_KEY is a live key.",
                hint="Set DJANGO_DEBUG=false in production, or use an sk_test_ key.",
                id="tally.E001",
            )
        )
    if live and settings.USING_SQLITE:
        errors.append(
            Error(
                "The database is SQLite while STRIPE_SECRET_KEY is a live key.",
                hint="Set DATABASE_URL to PostgreSQL: billing needs its row locks.",
                id="tally.E002",
            )
        )
    if settings.SECRET_KEY_GENERATED and not settings.DEBUG:
        errors.append(
            Error(
                "DJANGO_SECRET_KEY is not set and DJANGO_DEBUG is off.",
                hint="Only the demo may use a generated key; set DJANGO_SECRET_KEY in production.",
                id="tally.E003",
            )
        )
    if live and getattr(settings, "STRIPE_API_HOST", "").startswith(settings.STRIPE_SIMULATOR_URL):
        errors.append(
            Error(
                "A live Stripe key is pointed at the Stripe simulator.",
                hint="Unset STRIPE_API_HOST in production.",
                id="tally.E004",
            )
        )
    return errors
