"""One way to show money, credits and dates: the functions, and the `formatting` template library
(registered in settings, so `{% load formatting %}` works in every template).

Money is integer minor units in the currency's own exponent: cents for the dollar, none for the
yen, thousandths for the Kuwaiti dinar. Converting to and from the units people type goes through
`Decimal`, never a float, so no amount is ever rounded on the way.
"""

from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from django import template
from django.utils import timezone

register = template.Library()

# ISO 4217 minor-unit exponents that are not 2 (Stripe's zero-decimal and three-decimal currencies).
_EXPONENT = {
    **dict.fromkeys(
        (
            "bif",
            "clp",
            "djf",
            "gnf",
            "jpy",
            "kmf",
            "krw",
            "mga",
            "pyg",
            "rwf",
            "ugx",
            "vnd",
            "vuv",
            "xaf",
            "xof",
            "xpf",
        ),
        0,
    ),
    **dict.fromkeys(("bhd", "jod", "kwd", "omr", "tnd"), 3),
}
_SYMBOL = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥"}


def currency_exponent(currency: str) -> int:
    """Digits after the decimal point: 2 for usd, 0 for jpy, 3 for kwd."""
    return _EXPONENT.get((currency or "usd").lower(), 2)


def to_major(amount: int, currency: str) -> Decimal:
    """Minor units to the units people read and type, exactly: 1050 usd -> 10.50, 1500 jpy -> 1500."""
    exponent = currency_exponent(currency)
    return Decimal(int(amount)).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent))


def to_minor(value, currency: str) -> int:
    """Units people typed to integer minor units: 10.5 usd -> 1050, 1500 jpy -> 1500.

    Raises ValueError when the value has more decimals than the currency has (0.5 yen, $0.001),
    instead of rounding someone's money."""
    try:
        value = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not an amount") from None
    if not value.is_finite():
        raise ValueError(f"{value!r} is not an amount")
    minor = value.scaleb(currency_exponent(currency))
    if minor != minor.to_integral_value():
        raise ValueError(f"{(currency or 'usd').upper()} has {currency_exponent(currency)} decimal places")
    return int(minor)


@register.filter
def money(amount, currency: str = "usd") -> str:
    """Minor units to a price people read, in the currency's own exponent: 4900 usd -> $49,
    1250 usd -> $12.50, 1500 jpy -> ¥1,500 (the yen has no minor unit)."""
    if amount is None or amount == "":
        return ""
    amount = int(amount)
    currency = (currency or "usd").lower()
    exponent = currency_exponent(currency)
    symbol = _SYMBOL.get(currency, "")
    sign = "-" if amount < 0 else ""
    whole, minor = divmod(abs(amount), 10**exponent)
    text = f"{whole:,}" if minor == 0 else f"{whole:,}.{minor:0{exponent}d}"
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency.upper()}"


@register.filter
def number(value) -> str:
    """Credits, counts and quantities with thousands separators: 12500 -> 12,500."""
    if value is None or value == "":
        return ""
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


@register.filter
def signed(value) -> str:
    """A ledger movement with its sign: 500 -> +500, -1200 -> -1,200."""
    if value is None or value == "":
        return ""
    return f"{int(value):+,}"


@register.filter
def day(value) -> str:
    """A date in words: 1 Dec 2026."""
    if not value:
        return ""
    if isinstance(value, datetime):
        value = timezone.localtime(value) if timezone.is_aware(value) else value
        value = value.date()
    if not isinstance(value, date):
        return str(value)
    return f"{value.day} {value:%b %Y}"


@register.filter
def moment(value) -> str:
    """A date and time in words: 1 Dec 2026, 14:05 (the site's time zone)."""
    if not value:
        return ""
    if not isinstance(value, datetime):
        return day(value)
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return f"{day(value)}, {value:%H:%M}"
