"""Credits settings, read from Django settings with the defaults below."""

from django.conf import settings


def welcome_bonus() -> int:
    """Credits every new organization's account starts with (0 turns the bonus off)."""
    return int(getattr(settings, "CREDITS_WELCOME_BONUS", 500))


def welcome_bonus_days() -> int | None:
    """Days until the welcome bonus expires; None keeps it forever."""
    return getattr(settings, "CREDITS_WELCOME_BONUS_DAYS", None)


def reservation_ttl_seconds() -> int:
    return int(getattr(settings, "CREDITS_RESERVATION_TTL", 15 * 60))


# Prices an installation starts with. `credit_price_current` writes version 1 of an action from
# here the first time it is asked for; staff change a price by adding a version in the admin.
DEFAULT_PRICES = [
    # action, credits, unit, unit_size, description
    ("gpt-4", 10, "token", 1000, "GPT-4 generation, per 1K tokens"),
    ("gpt-4o-mini", 2, "token", 1000, "GPT-4o mini generation, per 1K tokens"),
    ("image", 50, "image", 1, "Image generation"),
    ("gpt-4-call", 10, "call", 1, "One GPT-4 API call"),
    ("data-export", 100, "export", 1, "A full data export"),
]

# code, name, credits, bonus credits, price in cents, description
DEFAULT_PACKAGES = [
    ("pack-10", "$10 pack", 10_000, 0, 1_000, "10,000 credits"),
    ("pack-50", "$50 pack", 50_000, 5_000, 5_000, "50,000 credits + 10% bonus"),
    ("pack-100", "$100 pack", 100_000, 15_000, 10_000, "100,000 credits + 15% bonus"),
    ("tokens-1k", "1K tokens", 1_000, 0, 100, "1,000 credits to try the AI actions"),
    ("tokens-10k", "10K tokens", 10_000, 0, 950, "10,000 credits, 5% off"),
    ("tokens-100k", "100K tokens", 100_000, 0, 9_000, "100,000 credits, 10% off"),
    ("enterprise-1m", "Enterprise 1M", 1_000_000, 0, 79_900, "1,000,000 credits, 20% off"),
]

# Selling points the credits page lists under a default package (at most six short texts).
DEFAULT_PACKAGE_BULLETS = {
    "pack-50": ["5,000 bonus credits", "Bought credits never expire"],
    "pack-100": ["15,000 bonus credits", "Bought credits never expire"],
    "enterprise-1m": ["The lowest price per credit", "Bought credits never expire"],
}
