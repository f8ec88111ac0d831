"""The database written back in the catalog file's format: `catalog_export`, and what the admin
checks an edit against (the same rules as the file, by parsing the database as a file).

Each plan carries its own entitlements (products none), every field is written out, and only
active rows are exported (the file deactivates what it does not name, and these already are).
"""

from datetime import UTC, datetime
from decimal import Decimal

from billing.catalog.spec import CatalogError, parse_catalog
from billing.models import (
    Addon,
    Coupon,
    Feature,
    Meter,
    Plan,
    PlanEntitlement,
    PlanLineItem,
    Product,
    SeatMode,
    SeatPolicy,
    TaxBehavior,
)


def _tier(tier: dict) -> dict:
    out = {}
    if tier.get("up_to") is not None:
        out["up_to"] = tier["up_to"]
    out["unit_amount"] = tier.get("unit_amount") or 0
    if tier.get("flat_amount"):
        out["flat_amount"] = tier["flat_amount"]
    return out


def _line_item(item: PlanLineItem) -> dict:
    out: dict = {"key": item.key, "kind": item.kind}
    if item.tiers:
        out["tiers_mode"] = item.tiers_mode
        out["tiers"] = [_tier(t) for t in item.tiers]
    elif item.unit_amount is not None:
        out["unit_amount"] = item.unit_amount
    if item.feature_id:
        out["feature"] = item.feature.key
    if item.currency_options:
        out["currency_options"] = {
            currency: (
                {"tiers": [_tier(t) for t in option.get("tiers") or []]}
                if isinstance(option, dict) and option.get("tiers")
                else {"unit_amount": option.get("unit_amount") if isinstance(option, dict) else option}
            )
            for currency, option in sorted(item.currency_options.items())
        }
    return out


def _entitlement(ent: PlanEntitlement):
    if ent.feature.kind == Feature.Kind.BOOLEAN:
        return True
    limit = "unlimited" if ent.limit == PlanEntitlement.UNLIMITED else ent.limit
    if ent.overage == "block" and list(ent.warn_at or []) == [80, 100]:
        return limit
    out: dict = {"limit": limit}
    if ent.overage != "block":
        out["overage"] = ent.overage
    if list(ent.warn_at or []) != [80, 100]:
        out["warn_at"] = list(ent.warn_at or [])
    return out


def _percent(value: Decimal | None):
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def catalog_export_data() -> dict:
    """The catalog in the database as the file's data (what `tomllib` would read)."""
    free = Plan.objects.filter(is_free=True).first()
    currency = free.currency if free else "usd"
    data: dict = {"currency": currency, "tax_behavior": TaxBehavior.EXCLUSIVE}
    data["features"] = {
        f.key: {
            "name": f.name,
            "kind": f.kind,
            **({"unit": f.unit} if f.unit else {}),
            "reset": f.reset,
            **({"description": f.description} if f.description else {}),
        }
        for f in Feature.objects.order_by("sort_order", "key")
    }
    data["meters"] = {
        m.key: {
            "name": m.name,
            "aggregation": m.aggregation,
            **({"property": m.property} if m.property else {}),
            **({"feature": m.feature.key} if m.feature_id else {}),
            **({"scale": m.scale} if m.scale != 1 else {}),
        }
        for m in Meter.objects.filter(is_active=True).select_related("feature").order_by("sort_order", "key")
    }
    plans = (
        Plan.objects.filter(is_active=True)
        .select_related("product")
        .prefetch_related("line_items__feature", "entitlements__feature")
        .order_by("sort_order", "key")
    )
    products: dict = {}
    for product in Product.objects.filter(plans__is_active=True).distinct().order_by("sort_order", "key"):
        products[product.key] = {
            "name": product.name,
            "description": product.description,
            "public": product.is_public,
            "contact_sales": product.contact_sales,
            "highlight": product.highlight,
            **({"bullets": list(product.bullets)} if product.bullets else {}),
            "plans": [],
        }
    for plan in plans:
        out: dict = {"key": plan.key, "name": plan.name, "interval": plan.interval}
        if plan.currency != currency:
            out["currency"] = plan.currency  # refused on import: the catalog has one currency
        if plan.trial_days:
            out["trial_days"] = plan.trial_days
        if plan.is_free:
            out["free"] = True
        if plan.credit_allowance:
            out["credit_allowance"] = plan.credit_allowance
        if plan.tax_behavior != data["tax_behavior"]:
            out["tax_behavior"] = plan.tax_behavior
        items = list(plan.line_items.all())
        if any(i.kind == PlanLineItem.Kind.PER_SEAT for i in items):
            out["seat_policy"] = plan.seat_policy
            out["seat_minimum"] = plan.seat_minimum
            if plan.seat_mode != SeatMode.AUTOMATIC:
                out["seat_mode"] = plan.seat_mode
        elif plan.seat_policy != SeatPolicy.PRORATE or plan.seat_minimum != 1:
            out["seat_policy"] = plan.seat_policy  # refused on import: seats need a per_seat item
        if items:
            out["line_items"] = [_line_item(i) for i in items]
        out["entitlements"] = {
            e.feature.key: _entitlement(e)
            for e in sorted(plan.entitlements.all(), key=lambda e: (e.feature.sort_order, e.feature.key))
            if e.enabled
        }
        products[plan.product.key]["plans"].append(out)
    data["products"] = products
    data["coupons"] = {}
    for coupon in Coupon.objects.filter(is_active=True).prefetch_related("products", "promotion_codes"):
        out = {"name": coupon.name}
        if coupon.percent_off is not None:
            out["percent_off"] = _percent(coupon.percent_off)
        if coupon.amount_off is not None:
            out["amount_off"] = coupon.amount_off
            out["currency"] = coupon.currency
        if coupon.currency_options:
            out["currency_options"] = dict(sorted(coupon.currency_options.items()))
        out["duration"] = coupon.duration
        if coupon.duration_in_months is not None:
            out["duration_in_months"] = coupon.duration_in_months
        if coupon.max_redemptions is not None:
            out["max_redemptions"] = coupon.max_redemptions
        if coupon.redeem_by is not None:
            out["redeem_by"] = coupon.redeem_by.astimezone(UTC)
        names = sorted(p.key for p in coupon.products.all())
        if names:
            out["products"] = names
        codes = []
        for code in sorted((c for c in coupon.promotion_codes.all() if c.is_active), key=lambda c: c.pk):
            entry: dict = {"code": code.code}
            if code.first_time_only:
                entry["first_time_only"] = True
            if code.minimum_amount is not None:
                entry["minimum_amount"] = code.minimum_amount
                entry["minimum_amount_currency"] = code.minimum_amount_currency
            if code.expires_at is not None:
                entry["expires_at"] = code.expires_at.astimezone(UTC)
            if code.max_redemptions is not None:
                entry["max_redemptions"] = code.max_redemptions
            codes.append(entry)
        if codes:
            out["promotion_codes"] = codes
        data["coupons"][coupon.key] = out
    data["addons"] = {}
    for addon in Addon.objects.filter(is_active=True).prefetch_related("entitlements__feature"):
        out = {
            "name": addon.name,
            "description": addon.description,
            "kind": addon.kind,
            "unit_amount": addon.unit_amount,
        }
        if addon.currency != currency:
            out["currency"] = addon.currency  # refused on import: the catalog has one currency
        if addon.currency_options:
            out["currency_options"] = {
                other: {"unit_amount": option.get("unit_amount") if isinstance(option, dict) else option}
                for other, option in sorted(addon.currency_options.items())
            }
        if addon.interval:
            out["interval"] = addon.interval
        if addon.max_quantity != 1:
            out["max_quantity"] = addon.max_quantity
        if addon.tax_behavior != data["tax_behavior"]:
            out["tax_behavior"] = addon.tax_behavior
        grants = {
            e.feature.key: "unlimited" if e.unlimited else e.amount
            for e in sorted(addon.entitlements.all(), key=lambda e: e.feature.sort_order)
        }
        if grants:
            out["entitlements"] = grants
        data["addons"][addon.key] = out
    return data


# --- A small TOML writer for the shapes above ----------------------------------------------------


def _string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} to the catalog file")


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() and key.isascii() else _string(key)


def _table(lines: list[str], header: str, values: dict, *, array: bool = False) -> None:
    lines.append(f"[[{header}]]" if array else f"[{header}]")
    for key, value in values.items():
        if value is None:
            continue
        lines.append(f"{_key(key)} = {_value(value)}")
    lines.append("")


def catalog_export_toml(data: dict | None = None) -> str:
    data = catalog_export_data() if data is None else data
    lines = [
        "# Tally's catalog, exported from the database (`manage.py catalog_export`).",
        "# Amounts are in minor units (cents). `manage.py catalog_sync --from-file` loads it.",
        "",
        f"currency = {_value(data['currency'])}",
        f"tax_behavior = {_value(data['tax_behavior'])}",
        "",
    ]
    for key, feature in data["features"].items():
        _table(lines, f"features.{_key(key)}", feature)
    for key, meter in data["meters"].items():
        _table(lines, f"meters.{_key(key)}", meter)
    for key, product in data["products"].items():
        _table(lines, f"products.{_key(key)}", {k: v for k, v in product.items() if k != "plans"})
        for plan in product["plans"]:
            _table(lines, f"products.{_key(key)}.plans", plan, array=True)
    for key, coupon in data["coupons"].items():
        _table(lines, f"coupons.{_key(key)}", coupon)
    for key, addon in data["addons"].items():
        _table(lines, f"addons.{_key(key)}", addon)
    return "\n".join(lines).rstrip() + "\n"


def catalog_problems() -> list[str]:
    """What the file's rules say about the catalog in the database (the admin's validation)."""
    try:
        parse_catalog(catalog_export_data())
    except CatalogError as error:
        return error.problems
    return []
