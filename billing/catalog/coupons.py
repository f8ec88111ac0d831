"""The `[coupons]` section of the catalog file: coupons and their promotion codes."""

from billing.catalog import rules
from billing.models import Duration
from billing.models.discounts import coupon_problems

_COUPON_FIELDS = {
    "name",
    "percent_off",
    "amount_off",
    "currency",
    "currency_options",
    "duration",
    "duration_in_months",
    "max_redemptions",
    "redeem_by",
    "products",
    "promotion_codes",
}
_CODE_FIELDS = {
    "code",
    "first_time_only",
    "minimum_amount",
    "minimum_amount_currency",
    "expires_at",
    "max_redemptions",
}


def parse_coupons(raw: dict, products: dict, problems: list[str]) -> dict[str, dict]:
    coupons, codes = {}, {}
    for key, coupon in raw.items():
        where = f"coupon '{key}'"
        unknown = set(coupon) - _COUPON_FIELDS
        if unknown:
            problems.append(f"{where}: unknown fields {', '.join(sorted(unknown))}")
        percent = coupon.get("percent_off")
        if percent is not None and (isinstance(percent, bool) or not isinstance(percent, int | float)):
            problems.append(f"{where} percent_off: a number such as 20 or 12.5")
            percent = None
        duration = coupon.get("duration", Duration.ONCE)
        for problem in coupon_problems(
            percent_off=percent,
            amount_off=coupon.get("amount_off"),
            currency=coupon.get("currency", ""),
            duration=duration,
            duration_in_months=coupon.get("duration_in_months"),
            currency_options=coupon.get("currency_options"),
        ):
            problems.append(f"{where}: {problem}")
        limit = coupon.get("max_redemptions")
        if limit is not None and (not rules.is_int(limit) or limit < 1):
            problems.append(f"{where} max_redemptions: a whole number >= 1")
        for product in coupon.get("products", []):
            if product not in products:
                problems.append(f"{where} products: unknown product '{product}'")
        promotion_codes = []
        for index, entry in enumerate(coupon.get("promotion_codes", [])):
            at = f"{where} promotion_codes[{index}]"
            unknown = set(entry) - _CODE_FIELDS
            if unknown:
                problems.append(f"{at}: unknown fields {', '.join(sorted(unknown))}")
            code = entry.get("code", "")
            if not (isinstance(code, str) and code.isalnum()):
                problems.append(f"{at} code: letters and digits, e.g. LAUNCH")
                continue
            if code.upper() in codes:
                problems.append(f"{at} code: '{code}' is already a code of coupon '{codes[code.upper()]}'")
            codes[code.upper()] = key
            minimum = entry.get("minimum_amount")
            if minimum is not None and (not rules.is_int(minimum) or minimum < 0):
                problems.append(f"{at} minimum_amount: a whole number of minor units >= 0")
            promotion_codes.append(
                {
                    "code": code,
                    "first_time_only": bool(entry.get("first_time_only", False)),
                    "minimum_amount": minimum,
                    "minimum_amount_currency": entry.get("minimum_amount_currency", "")
                    if minimum is None
                    else entry.get("minimum_amount_currency", coupon.get("currency") or "usd"),
                    "expires_at": rules.moment(entry.get("expires_at"), f"{at} expires_at", problems),
                    "max_redemptions": entry.get("max_redemptions"),
                }
            )
        coupons[key] = {
            "name": coupon.get("name") or key,
            "percent_off": percent,
            "amount_off": coupon.get("amount_off"),
            "currency": coupon.get("currency", "") if coupon.get("amount_off") is not None else "",
            "currency_options": coupon.get("currency_options") or {},
            "duration": duration,
            "duration_in_months": coupon.get("duration_in_months"),
            "max_redemptions": limit,
            "redeem_by": rules.moment(coupon.get("redeem_by"), f"{where} redeem_by", problems),
            "products": list(coupon.get("products", [])),
            "promotion_codes": promotion_codes,
        }
    return coupons
