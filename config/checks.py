"""System checks that refuse configurations which would lose money or leak secrets."""

import os
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Tags, register

STRIPE_API = "api.stripe.com"


def _not_stripe(api_host: str) -> bool:
    """Whether the SDK would talk to something other than Stripe: any address but
    https://api.stripe.com is a simulator, a proxy or a typo, whatever its host or port."""
    if not api_host:
        return False  # the SDK's default, Stripe itself
    parts = urlsplit(api_host)
    return not (parts.scheme == "https" and parts.hostname == STRIPE_API and parts.port in (None, 443))


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
    if live and _not_stripe(getattr(settings, "STRIPE_API_HOST", "")):
        errors.append(
            Error(
                f"A live Stripe key is pointed at {settings.STRIPE_API_HOST}, not at Stripe "
                "(a simulator or another server).",
                hint="Unset STRIPE_API_HOST in production, or set it to https://api.stripe.com.",
                id="tally.E004",
            )
        )
    multiproc = settings.PROMETHEUS_MULTIPROC_DIR
    if multiproc and not (os.path.isdir(multiproc) and os.access(multiproc, os.W_OK)):
        errors.append(
            Error(
                f"PROMETHEUS_MULTIPROC_DIR={multiproc} is not a writable directory.",
                hint="Create it (empty) before the node's processes start; web and Celery share it.",
                id="tally.E005",
            )
        )
    return errors
