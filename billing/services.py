import hashlib
import json
from datetime import datetime
from pathlib import Path

import stripe
from django.db import transaction
from django.utils import timezone

from billing import discounts, entitlements
from billing.catalog import DEFAULT_PATH, catalog_apply, load_catalog
from billing.models import (
    Addon,
    EntitlementGrant,
    Feature,
    OrgSubscription,
    Plan,
    PlanLineItem,
    Product,
)
from billing.stripe_client import stripe_client
from common.errors import ServiceError
from teams.models import Organization, User
from teams.services import audit_record

# --- Subscriptions and grants -------------------------------------------------------------


def subscription_set(
    *,
    organization: Organization,
    plan: Plan,
    status: str,
    seats: int = 1,
    billing_cycle_anchor: datetime | None = None,
    current_period_start: datetime | None = None,
    current_period_end: datetime | None = None,
    cancel_at_period_end: bool = False,
    stripe_subscription_id: str | None = None,
    actor: User | None = None,
) -> OrgSubscription:
    """Record what an organization is subscribed to (webhooks, staff, the demo)."""
    now = timezone.now()
    with transaction.atomic():
        subscription, created = OrgSubscription.objects.update_or_create(
            organization=organization,
            defaults={
                "plan": plan,
                "status": status,
                "seats": seats,
                "billing_cycle_anchor": billing_cycle_anchor or now,
                "current_period_start": current_period_start or billing_cycle_anchor or now,
                "current_period_end": current_period_end,
                "cancel_at_period_end": cancel_at_period_end,
                "stripe_subscription_id": stripe_subscription_id,
                "updated_at": now,
            },
        )
        audit_record(
            organization=organization,
            action="subscription.created" if created else "subscription.updated",
            actor=actor,
            target=plan.key,
            data={"status": status, "seats": seats},
        )
        transaction.on_commit(lambda: entitlements.invalidate(organization))
    return subscription


def grant_create(
    *,
    organizations: list[Organization],
    feature: str,
    source: str,
    amount: int = 0,
    unlimited: bool = False,
    reason: str = "",
    starts_at: datetime | None = None,
    expires_at: datetime | None = None,
    reference: str = "",
    actor: User | None = None,
) -> EntitlementGrant:
    """Give organizations more of a feature (or unlimited), outside their plan."""
    feature_obj = Feature.objects.filter(key=feature).first()
    if feature_obj is None:
        raise ServiceError("unknown_feature", f"No feature {feature!r} in the catalog.", field="feature")
    if source not in EntitlementGrant.Source.values:
        raise ServiceError("invalid_source", f"Unknown grant source {source!r}.", field="source")
    if amount < 0:
        raise ServiceError("invalid_amount", "A grant adds a positive amount.", field="amount")
    if not unlimited and amount == 0 and feature_obj.kind != Feature.Kind.BOOLEAN:
        raise ServiceError("invalid_amount", "Grant an amount, or unlimited.", field="amount")
    if expires_at and expires_at <= (starts_at or timezone.now()):
        raise ServiceError("invalid_expiry", "The grant would expire before it starts.", field="expires_at")
    with transaction.atomic():
        grant = EntitlementGrant.objects.create(
            feature=feature_obj,
            source=source,
            amount=amount,
            unlimited=unlimited,
            reason=reason,
            starts_at=starts_at or timezone.now(),
            expires_at=expires_at,
            reference=reference,
        )
        grant.organizations.set(organizations)
        for organization in organizations:
            audit_record(
                organization=organization,
                action="entitlement.granted",
                actor=actor,
                target=feature,
                data={
                    "source": source,
                    "amount": amount,
                    "unlimited": unlimited,
                    "expires_at": expires_at.isoformat() if expires_at else None,
                },
            )
        org_ids = [o.pk for o in organizations]
        transaction.on_commit(lambda: [entitlements.invalidate(pk) for pk in org_ids])
    return grant


def grant_end(*, grant: EntitlementGrant, actor: User | None = None) -> None:
    """End a grant now. Grants are history, so they are expired rather than deleted."""
    now = timezone.now()
    with transaction.atomic():
        EntitlementGrant.objects.filter(pk=grant.pk).update(expires_at=now)
        org_ids = list(grant.organizations.values_list("pk", flat=True))
        for organization in grant.organizations.all():
            audit_record(
                organization=organization,
                action="entitlement.grant_ended",
                actor=actor,
                target=grant.feature.key,
                data={"grant": grant.pk},
            )
        transaction.on_commit(lambda: [entitlements.invalidate(pk) for pk in org_ids])


# --- Catalog ------------------------------------------------------------------------------


def catalog_sync(*, path: Path = DEFAULT_PATH, dry_run: bool = False, push: bool = True) -> list[str]:
    """Validate the catalog file, upsert it, and push it to Stripe. Returns the diff."""
    spec = load_catalog(path)
    lines = catalog_apply(spec, dry_run=dry_run)
    if push:
        lines += catalog_push(dry_run=dry_run)
    return lines


def _money(amount: int | None, currency: str) -> str:
    return f"{(amount or 0) / 100:,.2f} {currency.upper()}"  # display only


def _price_params(item: PlanLineItem, meter_id: str | None) -> dict:
    plan = item.plan
    params: dict = {
        "currency": plan.currency,
        "recurring": {
            "interval": plan.interval,
            "usage_type": "metered" if item.kind == PlanLineItem.Kind.METERED else "licensed",
        },
        "nickname": f"{plan.name}: {item.key}",
        "metadata": {"tally_plan": plan.key, "tally_item": item.key},
        "tax_behavior": plan.tax_behavior,
    }
    if meter_id:
        params["recurring"]["meter"] = meter_id
    if item.tiers:
        params["billing_scheme"] = "tiered"
        params["tiers_mode"] = item.tiers_mode
        params["tiers"] = [
            {
                "up_to": t["up_to"] if t.get("up_to") is not None else "inf",
                "unit_amount": t.get("unit_amount", 0),
                "flat_amount": t.get("flat_amount", 0),
            }
            for t in item.tiers
        ]
    else:
        params["unit_amount"] = item.unit_amount
    options = {}
    for currency, option in sorted((item.currency_options or {}).items()):
        if option.get("tiers"):
            options[currency] = {
                "tiers": [
                    {
                        "up_to": t["up_to"] if t.get("up_to") is not None else "inf",
                        "unit_amount": t.get("unit_amount", 0),
                        "flat_amount": t.get("flat_amount", 0),
                    }
                    for t in option["tiers"]
                ]
            }
        else:
            options[currency] = {"unit_amount": option["unit_amount"]}
        options[currency]["tax_behavior"] = plan.tax_behavior
    if options:
        params["currency_options"] = options
    return params


def _same_options(remote, params: dict) -> bool:
    remote_options = {
        currency: (
            {
                "tiers": [
                    {
                        "up_to": t.get("up_to") if t.get("up_to") is not None else "inf",
                        "unit_amount": t.get("unit_amount") or 0,
                        "flat_amount": t.get("flat_amount") or 0,
                    }
                    for t in option.get("tiers")
                ]
            }
            if option.get("tiers")
            else {"unit_amount": option.get("unit_amount")}
        )
        | {"tax_behavior": option.get("tax_behavior")}
        for currency, option in (remote.get("currency_options") or {}).items()
        if currency != remote.get("currency")
    }
    return remote_options == params.get("currency_options", {})


def _addon_params(addon: Addon) -> dict:
    params: dict = {
        "currency": addon.currency,
        "unit_amount": addon.unit_amount,
        "nickname": addon.name,
        "metadata": {"tally_addon": addon.key},
        "tax_behavior": addon.tax_behavior,
    }
    if addon.kind == Addon.Kind.RECURRING:
        params["recurring"] = {"interval": addon.interval}
    return params


def _same_price(remote, params: dict) -> bool:
    recurring = params.get("recurring")
    remote_recurring = remote.get("recurring")
    if bool(recurring) != bool(remote_recurring) or remote.get("currency") != params["currency"]:
        return False
    # A price made without a tax behaviour (a credit package's) has Stripe's "unspecified".
    wanted_tax = params.get("tax_behavior", "unspecified")
    if (remote.get("tax_behavior") or "unspecified") != wanted_tax or not _same_options(remote, params):
        return False
    if recurring and (
        remote_recurring.get("interval") != recurring["interval"]
        or remote_recurring.get("usage_type") != recurring["usage_type"]
        or (recurring.get("meter") and remote_recurring.get("meter") != recurring["meter"])
    ):
        return False
    if "tiers" in params:
        remote_tiers = [
            {
                "up_to": t.get("up_to") if t.get("up_to") is not None else "inf",
                "unit_amount": t.get("unit_amount") or 0,
                "flat_amount": t.get("flat_amount") or 0,
            }
            for t in (remote.get("tiers") or [])
        ]
        return (
            remote.get("billing_scheme") == "tiered"
            and remote.get("tiers_mode") == params["tiers_mode"]
            and remote_tiers == params["tiers"]
        )
    return remote.get("billing_scheme") == "per_unit" and remote.get("unit_amount") == params["unit_amount"]


def _idempotency_key(*parts) -> str:
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return f"tally-catalog-{digest[:40]}"


def _ensure_product(
    client, product_id: str, name: str, description: str, key: str, dry_run: bool, lines: list[str]
) -> str:
    try:
        remote = client.v1.products.retrieve(product_id)
    except stripe.InvalidRequestError as error:
        if error.code != "resource_missing":
            raise
        lines.append(f"+ stripe product {product_id}")
        if not dry_run:
            params = {"id": product_id, "name": name, "metadata": {"tally_key": key}}
            if description:
                params["description"] = description
            client.v1.products.create(params, {"idempotency_key": _idempotency_key(params)})
        return product_id
    if remote.name != name or (remote.description or "") != description or not remote.active:
        lines.append(f"~ stripe product {product_id}")
        if not dry_run:
            client.v1.products.update(product_id, {"name": name, "description": description, "active": True})
    return product_id


def _ensure_price(
    client, lookup_key: str, product_id: str, params: dict, label: str, dry_run: bool, lines: list[str]
) -> str:
    found = client.v1.prices.list(
        {"lookup_keys": [lookup_key], "limit": 1, "expand": ["data.tiers", "data.currency_options"]}
    ).data
    current = found[0] if found else None
    if current is not None and current.get("product") == product_id and _same_price(current, params):
        return current.id
    lines.append(f"{'~' if current else '+'} stripe price {lookup_key}: {label}")
    if dry_run:
        return current.id if current else ""
    # Prices are immutable: a new amount is a new price that takes over the lookup key, and
    # the old one is archived (subscriptions already on it keep working).
    create = {**params, "product": product_id, "lookup_key": lookup_key, "transfer_lookup_key": True}
    price = client.v1.prices.create(create, {"idempotency_key": _idempotency_key(create)})
    if current is not None:
        client.v1.prices.update(current.id, {"active": False})
        lines.append(f"- stripe price {current.id} archived")
    return price.id


def _ensure_meter(client, feature: Feature, dry_run: bool, lines: list[str]) -> str | None:
    for meter in client.v1.billing.meters.list({"limit": 100}).auto_paging_iter():
        if meter.event_name == feature.key and meter.status == "active":
            return meter.id
    lines.append(f"+ stripe meter {feature.key}")
    if dry_run:
        return None
    params = {
        "display_name": feature.name,
        "event_name": feature.key,
        "default_aggregation": {"formula": "sum"},
        "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
        "value_settings": {"event_payload_key": "value"},
    }
    return client.v1.billing.meters.create(params, {"idempotency_key": _idempotency_key(params)}).id


def catalog_push(*, dry_run: bool = False) -> list[str]:
    """Create or find again every product, price and meter in Stripe. Safe to run repeatedly:
    products have fixed ids, prices are found by lookup key, meters by event name."""
    client = stripe_client()
    lines: list[str] = []
    items = list(PlanLineItem.objects.filter(plan__is_active=True).select_related("plan__product", "feature"))
    priced_products = {item.plan.product_id for item in items}
    meters: dict[int, str | None] = {}
    for product in Product.objects.filter(pk__in=priced_products):
        product_id = _ensure_product(
            client, f"tally_{product.key}", product.name, product.description, product.key, dry_run, lines
        )
        if not dry_run and product.stripe_product_id != product_id:
            Product.objects.filter(pk=product.pk).update(stripe_product_id=product_id)
    for item in items:
        meter_id = None
        if item.kind == PlanLineItem.Kind.METERED:
            if item.feature_id not in meters:
                meters[item.feature_id] = _ensure_meter(client, item.feature, dry_run, lines)
            meter_id = meters[item.feature_id]
        params = _price_params(item, meter_id)
        label = (
            f"{_money(item.unit_amount, item.plan.currency)}"
            if not item.tiers
            else f"{item.tiers_mode} tiers"
        ) + f" per {item.plan.interval}"
        price_id = _ensure_price(
            client, item.lookup_key, f"tally_{item.plan.product.key}", params, label, dry_run, lines
        )
        if not dry_run and item.stripe_price_id != price_id:
            PlanLineItem.objects.filter(pk=item.pk).update(stripe_price_id=price_id)
    for addon in Addon.objects.filter(is_active=True):
        product_id = _ensure_product(
            client, f"tally_addon_{addon.key}", addon.name, addon.description, addon.key, dry_run, lines
        )
        price_id = _ensure_price(
            client,
            addon.lookup_key,
            product_id,
            _addon_params(addon),
            _money(addon.unit_amount, addon.currency),
            dry_run,
            lines,
        )
        if not dry_run:
            Addon.objects.filter(pk=addon.pk).update(stripe_product_id=product_id, stripe_price_id=price_id)
    lines += discounts.coupons_push(dry_run=dry_run)
    return lines
