"""Applying a validated catalog to the database: one transaction, a diff of what changed."""

from decimal import Decimal

from django.db import transaction

from billing import entitlements
from billing.catalog import rules
from billing.catalog.spec import CatalogSpec, EntitlementSpec
from billing.models import (
    Addon,
    AddonEntitlement,
    Coupon,
    Feature,
    Meter,
    Plan,
    PlanEntitlement,
    PlanLineItem,
    Product,
    PromotionCode,
)


class _Diff:
    def __init__(self):
        self.lines: list[str] = []
        # For a line that changes fields: its index -> (label, {field: (database, file)}).
        self.changes: dict[int, tuple[str, dict]] = {}

    def upsert(self, model, lookup: dict, values: dict, label: str):
        obj = model.objects.filter(**lookup).first()
        if obj is None:
            obj = model.objects.create(**lookup, **values)
            self.lines.append(f"+ {label}")
            return obj
        changes = {k: (getattr(obj, k if not hasattr(v, "pk") else f"{k}_id"), v) for k, v in values.items()}
        changed = {}
        for name, (old, new) in changes.items():
            new_cmp = new.pk if hasattr(new, "pk") else new
            if old != new_cmp:
                changed[name] = (old, new_cmp)
                setattr(obj, name, new)
        if changed:
            obj.save(update_fields=list(changed))
            detail = ", ".join(f"{k}: {o!r} → {n!r}" for k, (o, n) in changed.items())
            self.changes[len(self.lines)] = (label, changed)
            self.lines.append(f"~ {label}: {detail}")
        return obj


class _DryRun(Exception):
    pass


def catalog_apply(spec: CatalogSpec, *, dry_run: bool = False) -> list[str]:
    """Upsert the catalog; returns the diff. Nothing in the database is deleted: rows the file
    no longer names are deactivated, because subscriptions and history may point at them."""
    return catalog_diff(spec, dry_run=dry_run).lines


def catalog_compare(spec: CatalogSpec) -> list[str]:
    """How the database differs from the file, said from the database's side (it is the truth
    once loaded): `~ plan pro_monthly line item base: unit_amount 5900 in the database, 4900 in the
    file`, `+ ... only in the file`, `- ... not in the file`."""
    diff = catalog_diff(spec, dry_run=True)
    out = []
    for index, line in enumerate(diff.lines):
        if index in diff.changes:
            label, fields = diff.changes[index]
            detail = ", ".join(
                f"{k} {db!r} in the database, {new!r} in the file" for k, (db, new) in fields.items()
            )
            out.append(f"~ {label}: {detail}")
        elif line.startswith("+ "):
            out.append(f"+ {line[2:]}: only in the file")
        elif line.startswith("- "):
            out.append(f"- {line[2:]}: not in the file")
        else:
            out.append(line)
    return out


def catalog_diff(spec: CatalogSpec, *, dry_run: bool = False) -> _Diff:
    diff = _Diff()
    try:
        with transaction.atomic():
            _apply(spec, diff)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    if not dry_run and diff.lines:
        entitlements.invalidate_catalog()
    return diff


def _apply(spec: CatalogSpec, diff: _Diff) -> None:
    features = {
        key: diff.upsert(Feature, {"key": key}, values, f"feature {key}")
        for key, values in spec.features.items()
    }
    products = {
        key: diff.upsert(Product, {"key": key}, values, f"product {key}")
        for key, values in spec.products.items()
    }
    for key, raw in spec.plans.items():
        values = {k: v for k, v in raw.items() if k not in ("line_items", "entitlements")}
        values["product"] = products[raw["product"]]
        values["is_active"] = True
        if values["is_free"]:
            # Only one free plan may exist: release the flag from a plan the file renamed.
            Plan.objects.filter(is_free=True).exclude(key=key).update(is_free=False)
        plan = diff.upsert(Plan, {"key": key}, values, f"plan {key}")
        item_keys = []
        for item in raw["line_items"]:
            item_keys.append(item["key"])
            diff.upsert(
                PlanLineItem,
                {"plan": plan, "key": item["key"]},
                {
                    "kind": item["kind"],
                    "unit_amount": item.get("unit_amount"),
                    "tiers_mode": item.get("tiers_mode", ""),
                    "tiers": [
                        {
                            "up_to": t.get("up_to"),
                            "unit_amount": t.get("unit_amount", 0),
                            "flat_amount": t.get("flat_amount", 0),
                        }
                        for t in item.get("tiers", [])
                    ],
                    "feature": features[item["feature"]] if item.get("feature") else None,
                    "currency_options": {
                        currency: (
                            {"tiers": [rules.tier(t) for t in option["tiers"]]}
                            if option.get("tiers")
                            else {"unit_amount": option["unit_amount"]}
                        )
                        for currency, option in (item.get("currency_options") or {}).items()
                    },
                },
                f"plan {key} line item {item['key']}",
            )
        stale = plan.line_items.exclude(key__in=item_keys)
        for item in stale:
            diff.lines.append(f"- plan {key} line item {item.key}")
        stale.delete()
        for feature_key, feature in features.items():
            ent = raw["entitlements"].get(feature_key) or EntitlementSpec(enabled=False, limit=0)
            diff.upsert(
                PlanEntitlement,
                {"plan": plan, "feature": feature},
                {"enabled": ent.enabled, "limit": ent.limit, "overage": ent.overage, "warn_at": ent.warn_at},
                f"plan {key} entitlement {feature_key}",
            )
    retired = Plan.objects.filter(is_active=True).exclude(key__in=spec.plans)
    for plan in retired:
        diff.lines.append(f"- plan {plan.key} (deactivated)")
    retired.update(is_active=False, is_free=False)

    for key, raw in spec.addons.items():
        values = {k: v for k, v in raw.items() if k != "entitlements"}
        values["is_active"] = True
        addon = diff.upsert(Addon, {"key": key}, values, f"addon {key}")
        for feature_key, (amount, unlimited) in raw["entitlements"].items():
            diff.upsert(
                AddonEntitlement,
                {"addon": addon, "feature": features[feature_key]},
                {"amount": amount, "unlimited": unlimited},
                f"addon {key} entitlement {feature_key}",
            )
        addon.entitlements.exclude(feature__key__in=raw["entitlements"]).delete()
    retired_addons = Addon.objects.filter(is_active=True).exclude(key__in=spec.addons)
    for addon in retired_addons:
        diff.lines.append(f"- addon {addon.key} (deactivated)")
    retired_addons.update(is_active=False)
    _apply_meters(spec, features, diff)
    _apply_coupons(spec, products, diff)


def _apply_meters(spec: CatalogSpec, features: dict, diff: _Diff) -> None:
    # A feature moving from one meter to another: release it first (one meter per feature).
    Meter.objects.exclude(key__in=spec.meters).exclude(feature=None).update(feature=None)
    for key, raw in spec.meters.items():
        values = {**raw, "feature": features[raw["feature"]] if raw["feature"] else None, "is_active": True}
        if values["feature"] is not None:
            Meter.objects.filter(feature=values["feature"]).exclude(key=key).update(feature=None)
        diff.upsert(Meter, {"key": key}, values, f"meter {key}")
    retired = Meter.objects.filter(is_active=True).exclude(key__in=spec.meters)
    for meter in retired:
        diff.lines.append(f"- meter {meter.key} (deactivated)")
    retired.update(is_active=False)


def _apply_coupons(spec: CatalogSpec, products: dict, diff: _Diff) -> None:
    for key, raw in spec.coupons.items():
        values = {k: v for k, v in raw.items() if k not in ("products", "promotion_codes")}
        if values["percent_off"] is not None:
            values["percent_off"] = Decimal(str(values["percent_off"])).quantize(Decimal("0.01"))
        values["is_active"] = True
        coupon = diff.upsert(Coupon, {"key": key}, values, f"coupon {key}")
        wanted = {products[p].pk for p in raw["products"]}
        if set(coupon.products.values_list("pk", flat=True)) != wanted:
            coupon.products.set(wanted)
            diff.lines.append(f"~ coupon {key}: products {sorted(raw['products'])}")
        for code in raw["promotion_codes"]:
            existing = PromotionCode.objects.filter(code__iexact=code["code"]).first()
            lookup = {"pk": existing.pk} if existing else {"code": code["code"]}
            diff.upsert(
                PromotionCode,
                lookup,
                {**{k: v for k, v in code.items() if k != "code"}, "coupon": coupon, "is_active": True},
                f"promotion code {code['code']}",
            )
        named = {c["code"].upper() for c in raw["promotion_codes"]}
        for stale in coupon.promotion_codes.filter(is_active=True):
            if stale.code.upper() not in named:
                diff.lines.append(f"- promotion code {stale.code} (deactivated)")
                PromotionCode.objects.filter(pk=stale.pk).update(is_active=False)
    retired = Coupon.objects.filter(is_active=True).exclude(key__in=spec.coupons)
    for coupon in retired:
        diff.lines.append(f"- coupon {coupon.key} (deactivated)")
        coupon.promotion_codes.update(is_active=False)
    retired.update(is_active=False)
