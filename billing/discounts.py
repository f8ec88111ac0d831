"""Coupons and promotion codes in Stripe, and the discounts on organizations' subscriptions.

The catalog's coupons are pushed to Stripe with fixed ids (`tally_<key>`), their promotion codes
found again by code. Stripe applies them (at checkout, or when staff give one to an
organization) and says so with `customer.discount.*` events; `subscription_discounts_sync`
mirrors what the subscription then carries into `SubscriptionDiscount`, which pages read.
"""

import hashlib
import json
from datetime import UTC, datetime

import stripe
from django.db import transaction
from django.utils import timezone

from billing.gateway.client import stripe_client
from billing.models import Coupon, OrgSubscription, PromotionCode, SubscriptionDiscount
from billing.webhooks.registry import Payload, on
from common.errors import ServiceError
from teams.models import Organization, User
from teams.services import audit_record


def _ts(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value else None


def _key(*parts) -> str:
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return f"tally-discount-{digest[:40]}"


# --- Pushing the catalog's coupons -----------------------------------------------------------


def coupon_params(coupon: Coupon) -> dict:
    params: dict = {
        "id": coupon.stripe_id,
        "name": coupon.name,
        "duration": coupon.duration,
        "metadata": {"tally_coupon": coupon.key},
    }
    if coupon.percent_off is not None:
        params["percent_off"] = f"{coupon.percent_off.normalize():f}"
    else:
        params["amount_off"] = coupon.amount_off
        params["currency"] = coupon.currency
        if coupon.currency_options:
            params["currency_options"] = {
                currency: {"amount_off": amount} for currency, amount in coupon.currency_options.items()
            }
    if coupon.duration_in_months:
        params["duration_in_months"] = coupon.duration_in_months
    if coupon.max_redemptions:
        params["max_redemptions"] = coupon.max_redemptions
    if coupon.redeem_by:
        params["redeem_by"] = int(coupon.redeem_by.timestamp())
    products = list(coupon.products.exclude(stripe_product_id="").values_list("stripe_product_id", flat=True))
    if products:
        params["applies_to"] = {"products": sorted(products)}
    return params


def _same_terms(remote, params: dict) -> bool:
    """Stripe never changes a coupon's terms: a remote one that differs is a different coupon."""
    percent = remote.get("percent_off")
    wanted_percent = float(params["percent_off"]) if "percent_off" in params else None
    options = {c: o.get("amount_off") for c, o in (remote.get("currency_options") or {}).items()}
    wanted_options = {c: o["amount_off"] for c, o in params.get("currency_options", {}).items()}
    return (
        percent == wanted_percent
        and remote.get("amount_off") == params.get("amount_off")
        and (remote.get("currency") or None) == (params.get("currency") or None)
        and remote.get("duration") == params["duration"]
        and remote.get("duration_in_months") == params.get("duration_in_months")
        and remote.get("max_redemptions") == params.get("max_redemptions")
        and remote.get("redeem_by") == params.get("redeem_by")
        and sorted(((remote.get("applies_to") or {}).get("products")) or [])
        == params.get("applies_to", {}).get("products", [])
        and {c: a for c, a in options.items() if c != remote.get("currency")} == wanted_options
    )


def _promotion_params(code: PromotionCode, coupon_id: str) -> dict:
    params: dict = {
        "promotion": {"type": "coupon", "coupon": coupon_id},
        "code": code.code,
        "metadata": {"tally_promotion_code": code.code},
        "restrictions": {"first_time_transaction": code.first_time_only},
    }
    if code.minimum_amount is not None:
        params["restrictions"]["minimum_amount"] = code.minimum_amount
        params["restrictions"]["minimum_amount_currency"] = code.minimum_amount_currency
    if code.expires_at:
        params["expires_at"] = int(code.expires_at.timestamp())
    if code.max_redemptions:
        params["max_redemptions"] = code.max_redemptions
    return params


def coupons_push(*, dry_run: bool = False, coupons=None) -> list[str]:
    """Create the catalog's coupons (or those of `coupons`, a queryset) and promotion codes in
    Stripe, find them again on later runs, and switch off codes that are no longer offered. Safe
    to run repeatedly."""
    client = stripe_client()
    lines: list[str] = []
    coupons = Coupon.objects.all() if coupons is None else coupons
    for coupon in coupons.filter(is_active=True).prefetch_related("products"):
        params = coupon_params(coupon)
        try:
            remote = client.v1.coupons.retrieve(coupon.stripe_id)
        except stripe.InvalidRequestError as error:
            if error.code != "resource_missing":
                raise
            remote = None
        if remote is None:
            lines.append(f"+ stripe coupon {coupon.stripe_id}")
            if not dry_run:
                client.v1.coupons.create(params, {"idempotency_key": _key(params)})
        elif not _same_terms(remote, params):
            lines.append(
                f"! stripe coupon {coupon.stripe_id} has other terms in Stripe, which never change them: "
                "give the new terms a new key"
            )
            continue
        elif remote.get("name") != coupon.name:
            lines.append(f"~ stripe coupon {coupon.stripe_id}: name")
            if not dry_run:
                client.v1.coupons.update(coupon.stripe_id, {"name": coupon.name})
        if not dry_run and coupon.stripe_coupon_id != coupon.stripe_id:
            Coupon.objects.filter(pk=coupon.pk).update(stripe_coupon_id=coupon.stripe_id)
        for code in coupon.promotion_codes.all():
            lines += _promotion_code_push(client, code, coupon.stripe_id, dry_run=dry_run)
    for code in PromotionCode.objects.filter(coupon__is_active=False).exclude(stripe_promotion_code_id=""):
        lines += _promotion_code_push(client, code, code.coupon.stripe_id, dry_run=dry_run)
    return lines


def _promotion_code_push(client, code: PromotionCode, coupon_id: str, *, dry_run: bool) -> list[str]:
    found = client.v1.promotion_codes.list({"code": code.code, "limit": 100}).data
    ours = [p for p in found if (p.promotion.coupon if p.promotion else None) == coupon_id]
    active = next((p for p in ours if p.active), None)
    offered = code.is_active and code.coupon.is_active
    lines = []
    if active is None and offered:
        lines.append(f"+ stripe promotion code {code.code}")
        if dry_run:
            return lines
        params = _promotion_params(code, coupon_id)
        active = client.v1.promotion_codes.create(params, {"idempotency_key": _key(params)})
    elif active is not None and not offered:
        lines.append(f"- stripe promotion code {code.code} (deactivated)")
        if not dry_run:
            client.v1.promotion_codes.update(active.id, {"active": False})
    remote_id = active.id if active is not None else (ours[0].id if ours else "")
    if not dry_run and remote_id and code.stripe_promotion_code_id != remote_id:
        PromotionCode.objects.filter(pk=code.pk).update(stripe_promotion_code_id=remote_id)
    return lines


# --- Codes customers bring -------------------------------------------------------------------


def promotion_code_find(code: str) -> PromotionCode | None:
    """The code a customer typed or followed a link with, if Tally offers it now."""
    code = (code or "").strip()
    if not code or len(code) > 64 or not code.isalnum():
        return None
    found = PromotionCode.objects.select_related("coupon").filter(code__iexact=code).first()
    return found if found is not None and found.redeemable() else None


# --- Discounts on subscriptions --------------------------------------------------------------


def subscription_discounts_sync(*, subscription_id: str) -> list[SubscriptionDiscount]:
    """Mirror the discounts Stripe now applies to a subscription; the ones it dropped end."""
    local = (
        OrgSubscription.objects.filter(stripe_subscription_id=subscription_id)
        .select_related("organization")
        .first()
    )
    if local is None:
        return []
    remote = stripe_client().v1.subscriptions.retrieve(subscription_id, {"expand": ["discounts"]})
    live = [d for d in (remote.get("discounts") or []) if not isinstance(d, str)]
    coupons = {c.stripe_coupon_id: c for c in Coupon.objects.exclude(stripe_coupon_id="")}
    codes = {
        p.stripe_promotion_code_id: p for p in PromotionCode.objects.exclude(stripe_promotion_code_id="")
    }
    now = timezone.now()
    kept = []
    with transaction.atomic():
        for discount in live:
            coupon_id = (discount.source or {}).get("coupon") if discount.get("source") else None
            if not isinstance(coupon_id, str):
                coupon_id = getattr(coupon_id, "id", "") or ""
            promo_id = discount.get("promotion_code")
            if promo_id is not None and not isinstance(promo_id, str):
                promo_id = promo_id.id
            row, _ = SubscriptionDiscount.objects.update_or_create(
                stripe_discount_id=discount.id,
                defaults={
                    "organization": local.organization,
                    "stripe_subscription_id": subscription_id,
                    "stripe_coupon_id": coupon_id,
                    "coupon": coupons.get(coupon_id),
                    "promotion_code": codes.get(promo_id) if promo_id else None,
                    "starts_at": _ts(discount.start) or now,
                    "ends_at": _ts(discount.get("end")),
                    "ended_at": None,
                },
            )
            kept.append(row)
        SubscriptionDiscount.objects.filter(stripe_subscription_id=subscription_id, ended_at=None).exclude(
            pk__in=[r.pk for r in kept]
        ).update(ended_at=now)
    return kept


def subscription_coupon_apply(
    *, organization: Organization, coupon: Coupon, actor: User | None, ip_address: str | None = None
) -> SubscriptionDiscount:
    """Staff give one organization's subscription a coupon (audited). The discounts it already
    has stay; the same coupon twice is refused, as Stripe refuses it."""
    subscription = OrgSubscription.objects.filter(organization=organization).first()
    if subscription is None or not subscription.stripe_subscription_id or not subscription.applies:
        raise ServiceError("no_subscription", f"{organization.name} has no live subscription.", status=409)
    if not coupon.is_active or not coupon.stripe_coupon_id:
        raise ServiceError(
            "coupon_not_synced",
            f"{coupon.name} is not in Stripe: run `manage.py catalog_sync`.",
            field="coupon",
        )
    client = stripe_client()
    remote = client.v1.subscriptions.retrieve(subscription.stripe_subscription_id, {"expand": ["discounts"]})
    current = [d for d in (remote.get("discounts") or []) if not isinstance(d, str)]
    if any((d.source or {}).get("coupon") == coupon.stripe_coupon_id for d in current):
        raise ServiceError(
            "coupon_already_applied", f"{organization.name} already has {coupon.name}.", field="coupon"
        )
    discounts = [{"discount": d.id} for d in current] + [{"coupon": coupon.stripe_coupon_id}]
    try:
        client.v1.subscriptions.update(
            subscription.stripe_subscription_id,
            {"discounts": discounts, "proration_behavior": "none"},
            {
                "idempotency_key": _key(
                    "apply", subscription.stripe_subscription_id, [d.id for d in current], coupon.key
                )
            },
        )
    except stripe.InvalidRequestError as error:
        raise ServiceError(
            "coupon_refused", f"Stripe refused the coupon: {error.user_message}", field="coupon"
        ) from None
    rows = subscription_discounts_sync(subscription_id=subscription.stripe_subscription_id)
    applied = next(r for r in rows if r.stripe_coupon_id == coupon.stripe_coupon_id)
    audit_record(
        organization=organization,
        action="billing.coupon_applied",
        actor=actor,
        target=coupon.key,
        data={"subscription": subscription.stripe_subscription_id, "discount": applied.stripe_discount_id},
        ip_address=ip_address,
    )
    return applied


def live_discounts(organization: Organization) -> list[SubscriptionDiscount]:
    """The discounts on the organization's subscription now, with their coupons and codes."""
    subscription = OrgSubscription.objects.filter(organization=organization).first()
    if subscription is None or not subscription.stripe_subscription_id:
        return []
    return list(
        SubscriptionDiscount.objects.filter(
            stripe_subscription_id=subscription.stripe_subscription_id, ended_at=None
        ).select_related("coupon", "promotion_code")
    )


def discount_lines(invoice) -> list[tuple[str, int]]:
    """An invoice's discounts as lines people read under its items: ("Launch offer", -980)."""
    taken = [
        (entry.discount if isinstance(entry.discount, str) else entry.discount.id, entry.amount)
        for entry in invoice.get("total_discount_amounts") or []
        if entry.amount
    ]
    known = {
        row.stripe_discount_id: row
        for row in SubscriptionDiscount.objects.filter(
            stripe_discount_id__in=[d for d, _ in taken]
        ).select_related("coupon")
    }
    lines = []
    for discount_id, amount in taken:
        row = known.get(discount_id)
        name = row.coupon.name if row is not None and row.coupon is not None else "Discount"
        lines.append((f"Discount: {name}", -amount))
    return lines


def plan_price_with(coupon: Coupon, plan, *, seats: int = 1, currency: str | None = None) -> int | None:
    """A plan's first-period price after the coupon (None: the coupon is not for this plan)."""
    currency = currency or plan.currency
    products = {p.pk for p in coupon.products.all()}
    if products and plan.product_id not in products:
        return None
    amounts = [item.amount(seats=seats, currency=currency) for item in plan.line_items.all()]
    if coupon.percent_off is not None:
        off = sum(coupon.off(amount, currency) for amount in amounts)
    else:
        off = min(coupon.amount_off_in(currency) or 0, sum(amounts))
    return sum(amounts) - off


@on("customer.discount.created", "customer.discount.updated", "customer.discount.deleted", payload=True)
def _discount_changed(*, kind: str, object_id: str, payload: Payload) -> None:
    subscription_id = (payload().get("object") or {}).get("subscription")
    if not subscription_id:
        row = SubscriptionDiscount.objects.filter(stripe_discount_id=object_id).first()
        subscription_id = row.stripe_subscription_id if row else None
    if subscription_id:
        subscription_discounts_sync(subscription_id=subscription_id)
    return None


@on(
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "checkout.session.completed",
    "invoice.paid",
    payload=True,
)
def _subscription_changed(*, kind: str, object_id: str, payload: Payload) -> None:
    """A discount made with the subscription (at checkout) is announced before Tally knows the
    subscription: it is mirrored once the subscription is. The payload is only a hint that the
    discounts may have changed; what they are is read from Stripe."""
    if kind.startswith("customer.subscription."):
        subscription_id = object_id
    elif kind == "checkout.session.completed":
        subscription_id = (payload().get("object") or {}).get("subscription")
    else:
        parent = (payload().get("object") or {}).get("parent") or {}
        subscription_id = (parent.get("subscription_details") or {}).get("subscription")
    if (
        not subscription_id
        or not OrgSubscription.objects.filter(stripe_subscription_id=subscription_id).exists()
    ):
        return None
    data = payload()
    touched = (
        (data.get("object") or {}).get("discounts")
        or "discounts" in (data.get("previous_attributes") or {})
        or SubscriptionDiscount.objects.filter(stripe_subscription_id=subscription_id, ended_at=None).exists()
    )
    if touched:
        subscription_discounts_sync(subscription_id=subscription_id)
    return None
