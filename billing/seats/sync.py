"""Per-seat billing: the seat limit, the quantity in Stripe, and what one more seat costs.

A membership change schedules `seat_sync` for after its commit. The task waits a few seconds
(`BILLING_SEAT_SYNC_DELAY`) and a per-organization flag in the cache lets only one task be
scheduled at a time, so a burst of changes (a team invited at once) becomes one quantity update,
or two when changes keep arriving while the first runs. The task reads the live member count when
it runs, not the count at scheduling time, and sends nothing when Stripe already has it; it never
runs inside a transaction.
"""

import uuid
from dataclasses import dataclass

import stripe
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from billing import entitlements, pricing
from billing.entitlements.gating import EntitlementError
from billing.gateway.client import stripe_client
from billing.models import PLAN_STATUSES, OrgSubscription, PlanLineItem, SeatPolicy, SeatSyncDue
from billing.notifications import seat_count_changed_queue
from billing.seats.counts import billable_seats, prepaid_seats, seat_holders
from billing.seats.schedule import _scheduled_key
from billing.subscriptions.sync import _plan_of, subscription_sync
from common.errors import ServiceError
from teams.models import Organization
from teams.services import audit_record

# Held while one sync talks to Stripe, so that two syncs cannot finish in the wrong order.
LOCK_TTL = 60


class SyncBusy(Exception):
    """Another sync of the same organization is running; the task retries shortly."""


def seat_limit_guard(*, organization: Organization, adding: int, pending: int) -> None:
    """Refuse a member (or an invitation) that would pass the `team_members` limit.

    teams calls this while it holds the organization's row lock, so the count it sees cannot
    change before the membership is written. Open invitations count as taken seats.
    """
    decision = entitlements.check(organization, "team_members", adding + pending)
    if decision.allowed or decision.reason == entitlements.Reason.UNKNOWN_FEATURE:
        _prepaid_seats_guard(organization, adding=adding, pending=pending)
        return  # a catalog without the feature sets no limit
    if decision.reason != entitlements.Reason.LIMIT_REACHED:
        raise EntitlementError(decision)
    waiting = f" and {pending} invitation{'s are' if pending != 1 else ' is'} open" if pending else ""
    raise EntitlementError(
        decision,
        f"{organization.name} has {decision.used} of its {decision.limit} member seats taken{waiting}. "
        "Upgrade the plan or add a seat pack to make room.",
    )


def _prepaid_seats_guard(organization: Organization, *, adding: int, pending: int) -> None:
    """On a prepaid-seat plan, members and open invitations stop at the seats bought; the
    refusal offers more seats, on the billing page."""
    bought = prepaid_seats(organization)
    if bought is None:
        return
    holders = seat_holders(organization)
    if holders + pending + adding <= bought:
        return
    subscription = OrgSubscription.objects.select_related("plan").get(organization=organization)
    plan = subscription.plan
    line = plan.seat_item()
    needed = holders + pending + adding - bought
    cost = (
        pricing.price(
            quantity=bought + needed,
            unit_amount=line.unit_amount,
            tiers=line.tiers,
            tiers_mode=line.tiers_mode or None,
        ).total
        - line.breakdown(bought).total
    )
    decision = entitlements.Decision(
        feature="team_members",
        allowed=False,
        reason=entitlements.Reason.LIMIT_REACHED,
        requested=adding + pending,
        used=holders,
        limit=bought,
        name="Team members",
        unit="member",
        upgrade=entitlements.Upgrade(
            "seats",
            plan.key,
            "seat" if needed == 1 else "seats",
            cost,
            plan.currency,
            plan.interval,
            needed,
            reverse("billing", args=[organization.slug]) + "#seats",
        ),
    )
    waiting = f" and {pending} invitation{'s are' if pending != 1 else ' is'} open" if pending else ""
    raise EntitlementError(
        decision,
        f"{organization.name} has {holders} of its {bought} prepaid seats taken{waiting}. "
        "Add seats to make room.",
    )


def _lock_key(organization_id: int) -> str:
    return f"billing:seat-sync:lock:{organization_id}"


def _proration_behavior(policy: str, *, increase: bool) -> str:
    if policy == SeatPolicy.INVOICE:
        return "always_invoice"
    if policy == SeatPolicy.RENEWAL and not increase:
        # No credit now; the lower quantity is billed from the next invoice on.
        return "none"
    return "create_prorations"


def _seat_item(remote, line: PlanLineItem):
    """The subscription item that carries the seats: by the price's metadata (which survives a
    price being replaced), else by price id."""
    for item in remote["items"].data:
        meta = item.price.metadata or {}
        if meta.get("tally_item") == line.key and meta.get("tally_plan") == line.plan.key:
            return item
    return next((i for i in remote["items"].data if i.price.id == line.stripe_price_id), None)


def _item_quantity_set(client: stripe.StripeClient, item_id: str, params: dict, *, idempotency_key: str):
    """The one Stripe call that changes a seat quantity (tests inject faults here)."""
    return client.v1.subscription_items.update(item_id, params, {"idempotency_key": idempotency_key})


@dataclass(frozen=True)
class SeatSync:
    before: int
    after: int
    proration_behavior: str


def seat_sync(*, organization_id: int, attempt: str = "") -> SeatSync | None:
    """Set the seat quantity in Stripe to the organization's billable seats, now.

    `attempt` names one logical sync (the Celery task id): its retries reuse the idempotency
    key, so a request that reached Stripe before the connection dropped is not applied twice.
    Returns the change made, or None when there was nothing to change.
    """
    # From here on, a change that commits schedules a new sync; the count read below already
    # includes every change committed before this line.
    cache.delete(_scheduled_key(organization_id))
    started = timezone.now()
    token = uuid.uuid4().hex
    if not cache.add(_lock_key(organization_id), token, timeout=LOCK_TTL):
        raise SyncBusy(f"a seat sync for organization {organization_id} is running")
    try:
        done = _sync(organization_id, attempt or token)
        # Every change up to `started` is in the count sent; a later one keeps its row.
        SeatSyncDue.objects.filter(organization_id=organization_id, last__lte=started).delete()
        return done
    finally:
        if cache.get(_lock_key(organization_id)) == token:
            cache.delete(_lock_key(organization_id))


def _sync(organization_id: int, attempt: str) -> SeatSync | None:
    organization = Organization.objects.filter(pk=organization_id, deleted_at__isnull=True).first()
    if organization is None:
        return None  # deleted: its subscription is being canceled instead
    subscription = OrgSubscription.objects.select_related("plan").filter(organization=organization).first()
    if subscription is None or not subscription.stripe_subscription_id or not subscription.applies:
        return None
    client = stripe_client()
    remote = client.v1.subscriptions.retrieve(subscription.stripe_subscription_id)
    if remote.status not in PLAN_STATUSES:
        # Ended in Stripe and Tally has not heard yet (a webhook late or lost): nothing to bill.
        subscription_sync(subscription_id=remote.id)
        return None
    # The plan Stripe bills, which a downgrade waiting for the period end makes differ from the
    # plan Tally grants: its seat item is the one whose quantity is charged at the renewal.
    plan = _plan_of(remote)[0] or subscription.plan
    line = plan.seat_item()
    if line is None:
        return None  # a flat plan: head count changes nothing in Stripe
    target = billable_seats(organization, plan=plan)
    item = _seat_item(remote, line)
    if item is None:
        return None
    current = item.quantity or 0
    if current == target:
        if subscription.seats != target:
            subscription_sync(subscription_id=remote.id)
        return None
    behavior = _proration_behavior(plan.seat_policy, increase=target > current)
    _item_quantity_set(
        client,
        item.id,
        {"quantity": target, "proration_behavior": behavior},
        idempotency_key=f"tally-seats-{item.id}-{current}-{target}-{attempt}",
    )
    synced = subscription_sync(subscription_id=remote.id) or subscription
    seat_count_changed_queue(
        subscription=synced, plan=plan, line=line, seats_from=current, seats_to=target, behavior=behavior
    )
    audit_record(
        organization=organization,
        action="billing.seats_changed",
        target=plan.key,
        data={"from": current, "to": target, "proration_behavior": behavior},
    )
    return SeatSync(current, target, behavior)


def subscription_cancel_deleted(*, organization_id: int) -> OrgSubscription | None:
    """Cancel a deleted organization's subscription at once. The subscription row, payments and
    invoices stay (the organization row is only marked deleted)."""
    organization = Organization.objects.filter(pk=organization_id).first()
    if organization is None or organization.deleted_at is None:
        raise ServiceError("not_deleted", "Only a deleted organization's subscription is canceled here.")
    subscription = OrgSubscription.objects.filter(organization=organization).first()
    if subscription is None or not subscription.stripe_subscription_id:
        return subscription
    client = stripe_client()
    remote = client.v1.subscriptions.retrieve(subscription.stripe_subscription_id)
    if remote.status not in ("canceled", "incomplete_expired"):
        client.v1.subscriptions.cancel(
            remote.id,
            {"cancellation_details": {"comment": "organization deleted"}},
            {"idempotency_key": f"tally-cancel-deleted-{remote.id}"},
        )
        audit_record(organization=organization, action="billing.canceled_on_delete", target=remote.id)
    return subscription_sync(subscription_id=remote.id)
