"""One catalog object pushed to Stripe after staff saved it in the admin.

An edit marks the object's `CatalogStripeState` pending and bumps its version (in the admin's
transaction); after the commit a Celery task pushes it. The push holds a lease on the state row
rather than a lock (no Stripe call runs inside a transaction), and records "in sync" only if the
version it pushed is still the newest: an edit made meanwhile is pushed again by the same run.

A changed amount is a new Stripe price: it is created and takes over the lookup key, then the
line item sells it (one transaction for every item of the plan), and only then is the old price
archived. A push that fails before the switch leaves the old prices selling; one that fails
after it is finished by the retry (the old prices wait in `PriceVersion` to be archived).
"""

import uuid
from collections.abc import Callable
from datetime import timedelta

import stripe
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from billing import discounts
from billing.catalog import sync
from billing.gateway.client import stripe_client
from billing.gateway.prices import meter_rename, price_archive, price_ensure, price_restore, product_ensure
from billing.models import (
    PLAN_STATUSES,
    Addon,
    CatalogStripeState,
    Coupon,
    Feature,
    OrgSubscription,
    Plan,
    PlanLineItem,
    PriceVersion,
    Product,
)

Kind = CatalogStripeState.Kind
Status = CatalogStripeState.Status
LEASE = timedelta(minutes=5)


class PushError(Exception):
    """Stripe refused (or does not hold) what the push needs; the message is shown to staff."""


def catalog_object_touch(*, kind: str, object_id: int) -> None:
    """Mark an edited object pending (call it inside the edit's transaction, then queue the push)."""
    state, _ = CatalogStripeState.objects.get_or_create(kind=kind, object_id=object_id)
    CatalogStripeState.objects.filter(pk=state.pk).update(
        version=F("version") + 1, status=Status.PENDING, error=""
    )


def catalog_object_push(*, kind: str, object_id: int) -> CatalogStripeState:
    """Push one object to Stripe; returns its state. Safe to call twice or at once: a second
    concurrent call leaves the object to the push that holds the lease."""
    state, _ = CatalogStripeState.objects.get_or_create(kind=kind, object_id=object_id)
    token, now = uuid.uuid4().hex, timezone.now()
    leased = CatalogStripeState.objects.filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now), pk=state.pk
    ).update(lease_token=token, lease_until=now + LEASE, attempted_at=now)
    if not leased:
        state.refresh_from_db()
        return state
    mine = CatalogStripeState.objects.filter(pk=state.pk, lease_token=token)
    while True:
        version = mine.values_list("version", flat=True).first()
        if version is None:  # the lease expired and another push took over
            break
        try:
            _push(kind, object_id)
        except (stripe.StripeError, PushError) as error:
            message = (getattr(error, "user_message", None) or str(error)).strip()
            if mine.filter(version=version).update(
                status=Status.FAILED, error=message[:2000], lease_token="", lease_until=None
            ):
                break
            continue  # edited meanwhile: the new version may push
        if mine.filter(version=version).update(
            status=Status.IN_SYNC,
            pushed_version=version,
            error="",
            lease_token="",
            lease_until=None,
            synced_at=timezone.now(),
        ):
            break
    state.refresh_from_db()
    return state


# Objects of the apps above billing (credit packages) push themselves: they register here.
_PUSHERS: dict[str, Callable[[int], None]] = {}


def catalog_pusher_register(kind: str, push: Callable[[int], None]) -> None:
    _PUSHERS[kind] = push


def _push(kind: str, object_id: int) -> None:
    if kind in _PUSHERS:
        _PUSHERS[kind](object_id)
        return
    client = stripe_client()
    if kind == Kind.PLAN:
        plan = Plan.objects.select_related("product").filter(pk=object_id).first()
        if plan is not None:
            plan_push(client, plan)
    elif kind == Kind.PRODUCT:
        product = Product.objects.filter(pk=object_id).first()
        if product is not None:
            _product_push(client, product)
    elif kind == Kind.ADDON:
        addon = Addon.objects.filter(pk=object_id).first()
        if addon is not None and addon.is_active:
            _addon_push(client, addon)
        elif addon is not None and addon.stripe_price_id:
            price_archive(client, addon.stripe_price_id)  # deactivated: no longer sold
    elif kind == Kind.COUPON:
        coupon = Coupon.objects.filter(pk=object_id)
        for line in discounts.coupons_push(coupons=coupon):
            if line.startswith("!"):
                raise PushError(line[2:])
    elif kind == Kind.FEATURE:
        feature = Feature.objects.filter(pk=object_id).first()
        if feature is not None and feature.kind == Feature.Kind.METERED:
            _meter_push(client, feature)


def _product_push(client, product: Product) -> None:
    product_id = product_ensure(
        client, f"tally_{product.key}", product.name, product.description, product.key, False, []
    )
    if product.stripe_product_id != product_id:
        Product.objects.filter(pk=product.pk).update(stripe_product_id=product_id)


def _meter_push(client, feature: Feature) -> None:
    for meter in client.v1.billing.meters.list({"limit": 100}).auto_paging_iter():
        if meter.event_name == feature.key and meter.status == "active":
            if meter.display_name != feature.name:
                meter_rename(client, meter.id, feature.name)
            return
    # Not in Stripe yet: it is made with the first metered price that bills it.


def plan_push(client, plan: Plan) -> None:
    """The plan's product and every line item's price, switched over together. A deactivated
    plan's prices are archived (its subscribers keep them); reactivated, the same prices sell again."""
    if plan.is_free:
        return
    if not plan.is_active:
        for price_id in plan.line_items.exclude(stripe_price_id="").values_list("stripe_price_id", flat=True):
            price_archive(client, price_id)
        return
    _product_push(client, plan.product)
    items = list(plan.line_items.select_related("plan__product", "feature"))
    wanted: list[tuple[PlanLineItem, str]] = []
    for item in items:
        meter_id = None
        if item.kind == PlanLineItem.Kind.METERED:
            meter_id = sync._ensure_meter(client, item.feature, False, [])
        price_id = price_ensure(
            client,
            item.lookup_key,
            f"tally_{plan.product.key}",
            sync._price_params(item, meter_id),
            item.key,
            False,
            [],
            archive_previous=False,
        )
        wanted.append((item, price_id))
    # The price sold until now, remembered with its amount before it is replaced.
    old_amounts = {
        item.pk: client.v1.prices.retrieve(item.stripe_price_id).unit_amount
        for item, price_id in wanted
        if item.stripe_price_id and item.stripe_price_id != price_id
    }
    with transaction.atomic():
        for item, price_id in wanted:
            if item.stripe_price_id and item.stripe_price_id != price_id:
                version_record(item=item, stripe_price_id=item.stripe_price_id, amount=old_amounts[item.pk])
            PriceVersion.objects.get_or_create(
                stripe_price_id=price_id,
                defaults={
                    "line_item": item,
                    "unit_amount": item.unit_amount,
                    "tiers": item.tiers,
                    "on_change": item.on_price_change,
                },
            )
            if item.stripe_price_id != price_id:
                PlanLineItem.objects.filter(pk=item.pk).update(stripe_price_id=price_id)
    for item, price_id in wanted:
        for old in PriceVersion.objects.filter(line_item=item, archived_at=None).exclude(
            stripe_price_id=price_id
        ):
            price_archive(client, old.stripe_price_id)
            PriceVersion.objects.filter(pk=old.pk).update(archived_at=timezone.now())
        price_restore(client, price_id)  # archived while the plan was inactive


def version_record(*, item: PlanLineItem, stripe_price_id: str, amount: int | None, **values) -> None:
    PriceVersion.objects.get_or_create(
        stripe_price_id=stripe_price_id, defaults={"line_item": item, "unit_amount": amount, **values}
    )


def _addon_push(client, addon: Addon) -> None:
    product_id = product_ensure(
        client, f"tally_addon_{addon.key}", addon.name, addon.description, addon.key, False, []
    )
    price_id = price_ensure(
        client, addon.lookup_key, product_id, sync._addon_params(addon), addon.key, False, []
    )
    Addon.objects.filter(pk=addon.pk).update(stripe_product_id=product_id, stripe_price_id=price_id)
    price_restore(client, price_id)  # archived while the add-on was inactive


def subscriptions_per_price() -> dict[str, int]:
    """How many subscriptions in force are on each Stripe price (a plan version)."""
    counts: dict[str, int] = {}
    live = OrgSubscription.objects.filter(status__in=PLAN_STATUSES).values_list("price_ids", flat=True)
    for price_ids in live:
        for price_id in price_ids or []:
            counts[price_id] = counts.get(price_id, 0) + 1
    return counts
