from django import template

from billing import discounts, entitlements
from common import formatting

register = template.Library()


@register.simple_tag
def entitlement(organization, feature: str, requested: int = 1):
    """`{% entitlement organization "sso" as sso %}{% if sso.allowed %}…` gates a button."""
    return entitlements.check(organization, feature, requested)


# One money formatter for every page: the filter lives in common/formatting.py.
register.filter("money", formatting.money)


@register.simple_tag
def price_with(plan, promotion_code, currency: str):
    """`{% price_with plan promo currency as p %}`: the plan's first price after the code's
    coupon, or None when the code does not apply to it."""
    if promotion_code is None or plan.is_free:
        return None
    return discounts.plan_price_with(promotion_code.coupon, plan, currency=currency)


@register.filter
def total_in(plan, currency: str) -> int:
    """`{{ plan|total_in:"eur" }}`: the plan's recurring total in one of its currencies."""
    return plan.total(currency=currency)


@register.filter
def amount_off_in(coupon, currency: str):
    return coupon.amount_off_in(currency or coupon.currency)


@register.filter
def limit_label(value) -> str:
    if value is None or value == entitlements.UNLIMITED:
        return "Unlimited"
    return formatting.number(value)


_BYTES = ((10**12, "TB"), (10**9, "GB"), (10**6, "MB"), (10**3, "kB"))


@register.filter
def in_units(value, unit: str = "") -> str:
    """A quantity as people read it in its unit: bytes in decimal units, as storage is sold
    (1,500,000,000 -> "1.5 GB"); anything else with thousands separators."""
    if value is None:
        return ""
    if unit == "byte":
        for size, name in _BYTES:
            if abs(value) >= size:
                # Integer arithmetic: one decimal, rounded down, never a float.
                tenths = value * 10 // size
                whole, tenth = divmod(tenths, 10)
                return f"{whole:,}.{tenth} {name}" if tenth else f"{whole:,} {name}"
        return f"{formatting.number(value)} B"
    return formatting.number(value)
