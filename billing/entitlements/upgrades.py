"""Upgrade suggestions for a refusal: the cheapest plan or add-on that would allow what was
asked, remembered briefly since refusals repeat."""

import math

from django.core.cache import cache
from django.db.models import Q
from django.urls import reverse

from billing import selectors
from billing.catalog.spec import UNLIMITED
from billing.entitlements.counter_registry import COUNTERS
from billing.entitlements.decisions import Effective, FeatureEntitlement, Upgrade
from billing.models import PLAN_STATUSES, Feature, OrgSubscription, Plan
from teams.models import Organization

UPGRADE_TTL = 60


def cached_upgrade(organization, effective, ent, needed) -> Upgrade | None:
    """Refusals repeat (a client retrying past its quota): remember the suggestion briefly."""
    key = f"billing:upgrade:{effective.version}:{effective.generation}:{organization.pk}:{ent.key}:{needed}"
    found = cache.get(key)
    if found is not None:
        return found or None
    upgrade = cheapest_upgrade(organization, effective, ent, needed)
    cache.set(key, upgrade or False, UPGRADE_TTL)
    return upgrade


def cheapest_upgrade(
    organization: Organization, effective: Effective, ent: FeatureEntitlement, needed: int
) -> Upgrade | None:
    """The cheapest plan (per month, at the current seat count) or add-on that would allow
    `needed` units in total; the sales contact when only a contract plan would."""
    pricing_url = reverse("pricing")
    seats = max(1, COUNTERS["team_members"](organization)) if "team_members" in COUNTERS else 1
    if ent.key == "team_members":
        seats = max(seats, needed)  # the seats the organization is about to have
    best: Upgrade | None = None
    contact: Upgrade | None = None
    # One filter() call, so that every condition applies to the same entitlement row.
    allows = Q(entitlements__feature_id=ent.feature_id, entitlements__enabled=True)
    if ent.kind != Feature.Kind.BOOLEAN:
        allows &= Q(entitlements__limit=UNLIMITED) | Q(entitlements__limit__gte=needed)
    plans = (
        Plan.objects.public()
        .exclude(key=effective.plan_key)
        .filter(allows)
        .select_related("product")
        .prefetch_related("line_items")
    )
    # Suggest plans on the organization's current billing interval when one fits; a yearly
    # commitment is a different decision from lifting a limit.
    priced: list[tuple[bool, int, Plan]] = []
    for plan in plans:
        if plan.is_free:
            continue
        if plan.is_contact_sales:
            contact = contact or Upgrade(
                "contact",
                plan.key,
                plan.name,
                None,
                plan.currency,
                plan.interval,
                1,
                pricing_url + f"#{plan.product.key}",
            )
            continue
        monthly = plan.total(seats=seats)
        if plan.interval == "year":
            monthly = math.ceil(monthly / 12)
        priced.append((plan.interval == effective.plan_interval, monthly, plan))
    same = [p for p in priced if p[0]] or priced
    if same:
        _, monthly, plan = min(same, key=lambda p: (p[1], p[2].sort_order))
        best = Upgrade(
            "plan",
            plan.key,
            plan.name,
            monthly,
            plan.currency,
            "month",
            1,
            pricing_url + f"#{plan.product.key}",
        )
    if ent.kind == Feature.Kind.LIMIT:
        deficit = needed - max(ent.limit, 0)
        # Only the add-ons the current plan allows, each leading to its buy button.
        subscription = OrgSubscription.objects.filter(
            organization=organization, status__in=PLAN_STATUSES
        ).first()
        offered = selectors.addons_offered(
            unlimited={
                f.feature_id
                for f in effective.features.values()
                if f.enabled and (f.kind == Feature.Kind.BOOLEAN or f.unlimited)
            },
            interval=effective.plan_interval,
            subscribed=bool(subscription and subscription.stripe_subscription_id),
        )
        billing_url = reverse("billing", args=[organization.slug])
        for addon in offered:
            grant = next((e for e in addon.entitlements.all() if e.feature_id == ent.feature_id), None)
            if grant is None or not (grant.unlimited or grant.amount > 0):
                continue
            units = 1 if grant.unlimited else math.ceil(deficit / grant.amount)
            if units > addon.max_quantity:
                continue
            cost = units * addon.unit_amount
            if best is None or cost < best.amount:
                best = Upgrade(
                    "addon",
                    addon.key,
                    addon.name,
                    cost,
                    addon.currency,
                    addon.interval or "once",
                    units,
                    billing_url + f"?quantity={units}#addon-{addon.key}",
                )
    return best or contact
