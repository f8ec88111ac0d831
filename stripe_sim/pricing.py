"""Money math: per-unit and tiered prices, quantity transforms, proration and billing periods.

Amounts are integers in minor units. Sub-unit prices (``unit_amount_decimal``) are carried as
``Fraction`` and rounded once per line. Rounding is round-half-to-even (Python's ``round`` on a
``Fraction``), applied to each line separately, so a credit line and its matching debit line
round the same way.
"""

import calendar
import datetime as dt
from fractions import Fraction
from typing import Any

DAY = 86400


def _amount(value: Any, decimal: Any = None) -> Fraction:
    if decimal not in (None, ""):
        return Fraction(str(decimal))
    if value in (None, ""):
        return Fraction(0)
    return Fraction(int(value))


def transformed_quantity(price: dict[str, Any], quantity: int) -> int:
    """``transform_quantity``: bill ``quantity / divide_by`` rounded up or down (per_unit only)."""
    transform = price.get("transform_quantity")
    if not transform:
        return quantity
    divide_by = int(transform["divide_by"])
    whole, remainder = divmod(quantity, divide_by)
    if remainder and transform.get("round") == "up":
        whole += 1
    return whole


def exact_amount(price: dict[str, Any], quantity: int) -> Fraction:
    """What ``quantity`` units of ``price`` cost for one full period, before rounding."""
    if price.get("billing_scheme") != "tiered":
        unit = _amount(price.get("unit_amount"), price.get("unit_amount_decimal"))
        return unit * transformed_quantity(price, quantity)
    tiers = price.get("_tiers") or price.get("tiers") or []
    if price.get("tiers_mode") == "volume":
        # Volume: every unit is priced at the tier the total quantity falls into.
        for tier in tiers:
            if tier["up_to"] is None or quantity <= tier["up_to"]:
                unit = _amount(tier.get("unit_amount"), tier.get("unit_amount_decimal"))
                flat = _amount(tier.get("flat_amount"), tier.get("flat_amount_decimal"))
                return unit * quantity + flat
        return Fraction(0)
    # Graduated: each tier prices the units that fall inside it; a tier's flat amount is charged
    # once any unit reaches it (an ``up_to: 0`` first tier is a base fee charged always).
    total = Fraction(0)
    previous = 0
    for tier in tiers:
        upper = tier["up_to"]
        in_tier = (quantity if upper is None else min(quantity, upper)) - previous
        unit = _amount(tier.get("unit_amount"), tier.get("unit_amount_decimal"))
        flat = _amount(tier.get("flat_amount"), tier.get("flat_amount_decimal"))
        if in_tier > 0 or (previous == 0 and upper == 0):
            total += unit * max(in_tier, 0) + flat
        if upper is None or quantity <= upper:
            break
        previous = upper
    return total


def in_currency(price: dict[str, Any], currency: str | None) -> dict[str, Any]:
    """The price as charged in ``currency``: its own amounts, or those of its
    ``currency_options`` (a copy naming the same price). ``None`` when it has none there."""
    if not currency or currency == price["currency"]:
        return price
    option = (price.get("currency_options") or {}).get(currency)
    if option is None:
        return None  # type: ignore[return-value]
    view = dict(price)
    view.update(
        currency=currency,
        unit_amount=option["unit_amount"],
        unit_amount_decimal=option["unit_amount_decimal"],
        tax_behavior=option["tax_behavior"] or price["tax_behavior"],
    )
    if price.get("billing_scheme") == "tiered":
        view["_tiers"] = price["_currency_tiers"][currency]
    return view


def amount_for(price: dict[str, Any], quantity: int) -> int:
    return round(exact_amount(price, quantity))


def prorate(price: dict[str, Any], quantity: int, remaining: int, period: int) -> int:
    """The share of a full period's amount for ``remaining`` seconds out of ``period``."""
    if period <= 0:
        return 0
    return round(exact_amount(price, quantity) * Fraction(remaining, period))


def add_interval(start: int, interval: str, count: int, anchor: int | None = None) -> int:
    """The end of a billing period starting at ``start``.

    Monthly and yearly periods keep the anchor's day of month, clamped to the month's length
    (Jan 31 -> Feb 28 -> Mar 31), as Stripe does.
    """
    if interval == "day":
        return start + count * DAY
    if interval == "week":
        return start + count * 7 * DAY
    months = count * (12 if interval == "year" else 1)
    begin = dt.datetime.fromtimestamp(start, dt.UTC)
    day = dt.datetime.fromtimestamp(anchor, dt.UTC).day if anchor is not None else begin.day
    month_index = begin.month - 1 + months
    year, month = begin.year + month_index // 12, month_index % 12 + 1
    day = min(day, calendar.monthrange(year, month)[1])
    return int(begin.replace(year=year, month=month, day=day).timestamp())


def sub_interval(end: int, interval: str, count: int) -> int:
    """The start of the billing period of ``interval`` x ``count`` that ends at ``end`` (the
    period Stripe prorates a partial first period against)."""
    if interval == "day":
        return end - count * DAY
    if interval == "week":
        return end - count * 7 * DAY
    months = count * (12 if interval == "year" else 1)
    finish = dt.datetime.fromtimestamp(end, dt.UTC)
    month_index = finish.month - 1 - months
    year, month = finish.year + month_index // 12, month_index % 12 + 1
    day = min(finish.day, calendar.monthrange(year, month)[1])
    return int(finish.replace(year=year, month=month, day=day).timestamp())
