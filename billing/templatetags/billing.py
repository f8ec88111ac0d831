from django import template

from billing import discounts, entitlements

register = template.Library()


@register.simple_tag
def entitlement(organization, feature: str, requested: int = 1):
    """`{% entitlement organization "sso" as sso %}{% if sso.allowed %}…` gates a button."""
    return entitlements.check(organization, feature, requested)


@register.filter
def money(amount, currency: str = "usd") -> str:
    """Minor units to a price people read: 4900 -> $49, 1250 -> $12.50."""
    if amount is None:
        return ""
    amount = int(amount)
    symbol = {"usd": "$", "eur": "€", "gbp": "£"}.get((currency or "usd").lower(), "")
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 100)
    text = f"{whole:,}" if cents == 0 else f"{whole:,}.{cents:02d}"
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency.upper()}"


@register.filter
def price_with(plan, promotion_code):
    """`{{ plan|price_with:promo }}`: the plan's first price after the code's coupon, or None."""
    if promotion_code is None or plan.is_free:
        return None
    return discounts.plan_price_with(promotion_code.coupon, plan)


@register.filter
def amount_off_in(coupon, currency: str):
    return coupon.amount_off_in(currency or coupon.currency)


@register.filter
def limit_label(value) -> str:
    if value is None or value == entitlements.UNLIMITED:
        return "Unlimited"
    return f"{value:,}"
