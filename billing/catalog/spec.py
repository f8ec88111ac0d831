"""Plans as code: read `config/catalog.toml`, validate it, and upsert it into the database.

Validation collects every problem before anything is written, each naming where it was found
(`plan 'team_monthly' line_items[0].tiers: tiers are not ascending ...`). Applying is one
transaction that reports what changed, so `catalog_sync --dry-run` can print the same diff.
"""

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from billing.catalog import rules
from billing.catalog.coupons import parse_coupons
from billing.models import (
    Addon,
    Aggregation,
    Feature,
    Interval,
    Overage,
    PlanEntitlement,
    PlanLineItem,
    SeatMode,
    SeatPolicy,
    TaxBehavior,
)
from billing.pricing import validate_tiers

DEFAULT_PATH = Path(settings.BASE_DIR) / "config" / "catalog.toml"


DEFAULT_WARN_AT = [80, 100]


UNLIMITED = PlanEntitlement.UNLIMITED


class CatalogError(Exception):
    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class EntitlementSpec:
    enabled: bool
    limit: int
    overage: str = Overage.BLOCK
    warn_at: list[int] = field(default_factory=lambda: list(DEFAULT_WARN_AT))


@dataclass
class CatalogSpec:
    currency: str
    features: dict[str, dict]
    products: dict[str, dict]
    plans: dict[str, dict]  # key -> fields, with "product", "line_items", "entitlements"
    addons: dict[str, dict]
    meters: dict[str, dict] = field(default_factory=dict)
    coupons: dict[str, dict] = field(default_factory=dict)  # key -> fields, with "promotion_codes"


def _entitlement(raw, feature: dict, where: str, problems: list[str]) -> EntitlementSpec | None:
    kind = feature["kind"]
    if kind == Feature.Kind.BOOLEAN:
        if not isinstance(raw, bool):
            problems.append(f"{where}: an on/off feature takes true or false")
            return None
        return EntitlementSpec(enabled=raw, limit=0)
    options = {}
    if isinstance(raw, dict):
        options = dict(raw)
        raw = options.pop("limit", None)
        unknown = set(options) - {"overage", "warn_at"}
        if unknown:
            problems.append(f"{where}: unknown fields {', '.join(sorted(unknown))}")
    if raw == "unlimited":
        limit = UNLIMITED
    elif rules.is_int(raw) and raw >= 0:
        limit = raw
    else:
        problems.append(f'{where}: limit must be a whole number >= 0 or "unlimited"')
        return None
    overage = options.get("overage", Overage.BLOCK)
    if overage not in Overage.values:
        problems.append(f"{where}: overage must be one of {', '.join(Overage.values)}")
    if overage != Overage.BLOCK and kind != Feature.Kind.METERED:
        problems.append(f"{where}: only metered features allow overage")
    warn_at = options.get("warn_at", DEFAULT_WARN_AT)
    if not (isinstance(warn_at, list) and all(rules.is_int(p) and 0 < p <= 100 for p in warn_at)):
        problems.append(f"{where}: warn_at is a list of percentages between 1 and 100")
        warn_at = DEFAULT_WARN_AT
    return EntitlementSpec(enabled=True, limit=limit, overage=overage, warn_at=sorted(warn_at))


def _entitlements(raw, features, where, problems) -> dict[str, EntitlementSpec]:
    result = {}
    if not isinstance(raw, dict):
        problems.append(f"{where}: entitlements must be a table")
        return result
    for key, value in raw.items():
        if key not in features:
            problems.append(f"{where}: unknown feature '{key}'")
            continue
        spec = _entitlement(value, features[key], f"{where}.{key}", problems)
        if spec:
            result[key] = spec
    return result


def _line_items(raw, features, currency_where, where, problems) -> list[dict]:
    items, seen = [], set()
    for index, item in enumerate(raw or []):
        at = f"{where} line_items[{index}]"
        key, kind = item.get("key"), item.get("kind")
        if not key:
            problems.append(f"{at}: key is required")
        elif key in seen:
            problems.append(f"{at}: duplicate key '{key}'")
        seen.add(key)
        if kind not in PlanLineItem.Kind.values:
            problems.append(f"{at}: kind must be one of {', '.join(PlanLineItem.Kind.values)}")
        unknown = set(item) - {
            "key",
            "kind",
            "unit_amount",
            "tiers_mode",
            "tiers",
            "feature",
            "currency_options",
        }
        if unknown:
            problems.append(f"{at}: unknown fields {', '.join(sorted(unknown))}")
        for currency, option in (item.get("currency_options") or {}).items():
            where_option = f"{at} currency_options.{currency}"
            if not (len(currency) == 3 and currency.islower()) or currency == currency_where:
                problems.append(f"{where_option}: another currency than the catalog's, e.g. eur")
            if not isinstance(option, dict) or set(option) - {"unit_amount", "tiers"}:
                problems.append(f"{where_option}: {{ unit_amount = ... }} or {{ tiers = [...] }}")
                continue
            if bool(option.get("tiers")) != bool(item.get("tiers")):
                problems.append(f"{where_option}: tiers in every currency, or in none")
            elif item.get("tiers") and [t.get("up_to") for t in option["tiers"]] != [
                t.get("up_to") for t in item["tiers"]
            ]:
                problems.append(f"{where_option}: the tiers have the same bounds in every currency")
            for problem in validate_tiers(
                unit_amount=option.get("unit_amount"),
                tiers=option.get("tiers"),
                tiers_mode=item.get("tiers_mode"),
            ):
                problems.append(f"{where_option}: {problem}")
        for problem in validate_tiers(
            unit_amount=item.get("unit_amount"),
            tiers=item.get("tiers"),
            tiers_mode=item.get("tiers_mode"),
        ):
            problems.append(f"{at}: {problem}")
        feature = item.get("feature")
        if kind == PlanLineItem.Kind.METERED:
            if feature not in features:
                problems.append(f"{at}: a metered item names a known feature (got {feature!r})")
            elif features[feature]["kind"] != Feature.Kind.METERED:
                problems.append(f"{at}: feature '{feature}' is not metered")
        elif feature is not None:
            problems.append(f"{at}: only metered items name a feature")
        items.append(item)
    return items


def _addon_currency_options(raw, currency: str, where: str, problems: list[str]) -> dict:
    """An add-on in the catalog's other currencies, as a plan's flat price: one amount each."""
    options = {}
    if raw is not None and not isinstance(raw, dict):
        problems.append(f"{where} currency_options: a table such as {{ eur = {{ unit_amount = 900 }} }}")
        return options
    for other, option in (raw or {}).items():
        at = f"{where} currency_options.{other}"
        if not (len(other) == 3 and other.islower()) or other == currency:
            problems.append(f"{at}: another currency than the catalog's, e.g. eur")
        elif not isinstance(option, dict) or set(option) != {"unit_amount"}:
            problems.append(f"{at}: {{ unit_amount = ... }}")
        elif not rules.is_int(option["unit_amount"]) or option["unit_amount"] < 0:
            problems.append(f"{at}: unit_amount must be a whole number of cents >= 0")
        else:
            options[other] = {"unit_amount": option["unit_amount"]}
    return dict(sorted(options.items()))


def _meters(raw: dict, features: dict, problems: list[str]) -> dict[str, dict]:
    meters, fed = {}, {}
    for index, (key, meter) in enumerate(raw.items()):
        where = f"meter '{key}'"
        unknown = set(meter) - {"name", "aggregation", "property", "feature", "scale"}
        if unknown:
            problems.append(f"{where}: unknown fields {', '.join(sorted(unknown))}")
        aggregation = meter.get("aggregation", Aggregation.SUM)
        if aggregation not in Aggregation.values:
            problems.append(f"{where} aggregation: must be one of {', '.join(Aggregation.values)}")
        prop = meter.get("property", "")
        if aggregation == Aggregation.UNIQUE_COUNT and not prop:
            problems.append(f"{where} property: a unique count names the property it counts")
        if aggregation != Aggregation.UNIQUE_COUNT and prop:
            problems.append(f"{where} property: only unique counts name a property")
        feature = meter.get("feature")
        kind = features[feature]["kind"] if feature in features else None
        scale = meter.get("scale", 1)
        if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
            problems.append(f"{where} scale: a whole number of the limit's units per meter unit, at least 1")
        elif scale != 1 and kind != Feature.Kind.LIMIT:
            problems.append(f"{where} scale: only a meter feeding a limit feature is scaled")
        if feature is not None:
            if kind == Feature.Kind.LIMIT and aggregation != Aggregation.LAST:
                problems.append(f'{where} feature: a limit is fed by a gauge (aggregation "last") only')
            elif kind not in (Feature.Kind.METERED, Feature.Kind.LIMIT):
                problems.append(f"{where} feature: {feature!r} is not a metered or limit feature")
            elif feature in fed:
                problems.append(f"{where} feature: '{feature}' is already fed by meter '{fed[feature]}'")
            fed[feature] = key
        meters[key] = {
            "name": meter.get("name") or key.replace("_", " ").capitalize(),
            "aggregation": aggregation,
            "property": prop,
            "feature": feature,
            "scale": scale,
            "sort_order": index,
        }
    return meters


def parse_catalog(data: dict) -> CatalogSpec:
    problems: list[str] = []
    currency = data.get("currency", "usd")
    if not (isinstance(currency, str) and len(currency) == 3 and currency.islower()):
        problems.append(f"currency: {currency!r} is not a lowercase ISO code such as 'usd'")
    tax_behavior = rules.tax_behavior(
        data.get("tax_behavior", TaxBehavior.EXCLUSIVE), "tax_behavior", problems
    )

    features = {}
    for key, raw in (data.get("features") or {}).items():
        where = f"feature '{key}'"
        kind = raw.get("kind")
        if kind not in Feature.Kind.values:
            problems.append(f"{where} kind: must be one of {', '.join(Feature.Kind.values)}")
            continue
        reset = raw.get("reset", "month" if kind == Feature.Kind.METERED else "never")
        if kind == Feature.Kind.METERED and reset != "month":
            problems.append(f"{where} reset: metered features reset every month")
        if kind != Feature.Kind.METERED and reset != "never":
            problems.append(f"{where} reset: only metered features reset")
        features[key] = {
            "name": raw.get("name") or key.replace("_", " ").capitalize(),
            "kind": kind,
            "unit": raw.get("unit", ""),
            "reset": reset,
            "description": raw.get("description", ""),
            "sort_order": len(features),
        }

    products, plans = {}, {}
    free_plans = []
    for p_index, (key, raw) in enumerate((data.get("products") or {}).items()):
        where = f"product '{key}'"
        products[key] = {
            "name": raw.get("name") or key.capitalize(),
            "description": raw.get("description", ""),
            "sort_order": p_index,
            "is_public": raw.get("public", True),
            "contact_sales": raw.get("contact_sales", False),
            "highlight": raw.get("highlight", False),
            "bullets": rules.bullets(raw.get("bullets", []), f"{where} bullets", problems),
        }
        base = _entitlements(raw.get("entitlements", {}), features, f"{where} entitlements", problems)
        if not raw.get("plans"):
            problems.append(f"{where}: has no plans")
        for plan_raw in raw.get("plans", []):
            plan_key = plan_raw.get("key")
            at = f"plan '{plan_key}'"
            if not plan_key:
                problems.append(f"{where}: a plan has no key")
                continue
            if plan_key in plans:
                problems.append(f"{at}: duplicate plan key")
                continue
            interval = plan_raw.get("interval", "month")
            if interval not in Interval.values:
                problems.append(f"{at} interval: must be 'month' or 'year'")
            trial_days = plan_raw.get("trial_days", 0)
            if not rules.is_int(trial_days) or trial_days < 0:
                problems.append(f"{at} trial_days: must be a whole number >= 0")
            plan_currency = plan_raw.get("currency", currency)
            if plan_currency != currency:
                problems.append(f"{at} currency: {plan_currency!r} differs from the catalog's {currency!r}")
            entitlements = dict(base)
            entitlements.update(
                _entitlements(plan_raw.get("entitlements", {}), features, f"{at} entitlements", problems)
            )
            items = _line_items(plan_raw.get("line_items"), features, currency, at, problems)
            seat_policy = plan_raw.get("seat_policy", SeatPolicy.PRORATE)
            if seat_policy not in SeatPolicy.values:
                problems.append(f"{at} seat_policy: must be one of {', '.join(SeatPolicy.values)}")
            seat_minimum = plan_raw.get("seat_minimum", 1)
            if not rules.is_int(seat_minimum) or seat_minimum < 1:
                problems.append(f"{at} seat_minimum: must be a whole number >= 1")
                seat_minimum = 1
            seat_mode = plan_raw.get("seat_mode", SeatMode.AUTOMATIC)
            if seat_mode not in SeatMode.values:
                problems.append(f"{at} seat_mode: must be one of {', '.join(SeatMode.values)}")
                seat_mode = SeatMode.AUTOMATIC
            has_seats = any(item.get("kind") == PlanLineItem.Kind.PER_SEAT for item in items)
            if not has_seats and ({"seat_policy", "seat_minimum", "seat_mode"} & set(plan_raw)):
                problems.append(f"{at}: seat_policy, seat_minimum and seat_mode need a per_seat line item")
            is_free = bool(plan_raw.get("free", False))
            credit_allowance = plan_raw.get("credit_allowance", 0)
            if not rules.is_int(credit_allowance) or credit_allowance < 0:
                problems.append(f"{at} credit_allowance: must be a whole number of credits >= 0")
                credit_allowance = 0
            if is_free:
                free_plans.append(plan_key)
                if items:
                    problems.append(f"{at}: the free plan has no line items")
            names = {"month": "monthly", "year": "yearly"}
            plans[plan_key] = {
                "product": key,
                "name": plan_raw.get("name")
                or (
                    products[key]["name"]
                    if is_free or raw.get("contact_sales")
                    else f"{products[key]['name']} ({names.get(interval, interval)})"
                ),
                "interval": interval,
                "currency": currency,
                "trial_days": trial_days if rules.is_int(trial_days) else 0,
                "is_free": is_free,
                "seat_policy": seat_policy,
                "seat_minimum": seat_minimum,
                "seat_mode": seat_mode,
                "credit_allowance": credit_allowance,
                "tax_behavior": rules.tax_behavior(
                    plan_raw.get("tax_behavior", tax_behavior), f"{at} tax_behavior", problems
                ),
                "sort_order": len(plans),
                "line_items": items,
                "entitlements": entitlements,
            }
    if len(free_plans) != 1:
        problems.append(f"catalog: exactly one plan must be free = true (found {len(free_plans)})")

    addons = {}
    for a_index, (key, raw) in enumerate((data.get("addons") or {}).items()):
        where = f"addon '{key}'"
        kind = raw.get("kind")
        if kind not in Addon.Kind.values:
            problems.append(f"{where} kind: must be 'one_time' or 'recurring'")
        amount = raw.get("unit_amount")
        if not rules.is_int(amount) or amount < 0:
            problems.append(f"{where} unit_amount: must be a whole number of cents >= 0")
        interval = raw.get("interval", "")
        if kind == Addon.Kind.RECURRING and interval not in Interval.values:
            problems.append(f"{where} interval: a recurring add-on is monthly or yearly")
        if raw.get("currency", currency) != currency:
            problems.append(f"{where} currency: differs from the catalog's {currency!r}")
        options = _addon_currency_options(raw.get("currency_options"), currency, where, problems)
        grants = {}
        for feature_key, value in (raw.get("entitlements") or {}).items():
            if feature_key not in features:
                problems.append(f"{where} entitlements: unknown feature '{feature_key}'")
            elif value == "unlimited":
                grants[feature_key] = (0, True)
            elif rules.is_int(value) and value > 0:
                grants[feature_key] = (value, False)
            else:
                problems.append(f'{where} entitlements.{feature_key}: a positive number or "unlimited"')
        addons[key] = {
            "name": raw.get("name") or key,
            "description": raw.get("description", ""),
            "kind": kind,
            "unit_amount": amount,
            "currency": currency,
            "currency_options": options,
            "interval": interval if kind == Addon.Kind.RECURRING else "",
            "max_quantity": raw.get("max_quantity", 1),
            "tax_behavior": rules.tax_behavior(
                raw.get("tax_behavior", tax_behavior), f"{where} tax_behavior", problems
            ),
            "sort_order": a_index,
            "entitlements": grants,
        }

    meters = _meters(data.get("meters") or {}, features, problems)
    coupons = parse_coupons(data.get("coupons") or {}, products, problems)
    if problems:
        raise CatalogError(problems)
    return CatalogSpec(currency, features, products, plans, addons, meters, coupons)


def load_catalog(path: Path = DEFAULT_PATH) -> CatalogSpec:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise CatalogError([f"{path.name}: {error}"]) from None
    return parse_catalog(data)
