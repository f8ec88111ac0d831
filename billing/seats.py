"""Per-seat billing: the seat limit, the quantity in Stripe, and what one more seat costs.

A membership change schedules `seat_sync` for after its commit. The task waits a few seconds
(`BILLING_SEAT_SYNC_DELAY`) and a per-organization flag in the cache lets only one task be
scheduled at a time, so a burst of changes (a team invited at once) becomes one quantity update,
or two when changes keep arriving while the first runs. The task reads the live member count when
it runs, not the count at scheduling time, and sends nothing when Stripe already has it; it never
runs inside a transaction.
"""

import uuid
from dataclasses import dataclass, replace

import stripe
from django.conf import settings
from django.core.cache import cache

from billing import entitlements, pricing
from billing.gating import EntitlementError
from billing.models import OrgSubscription, Plan, PlanLineItem, SeatPolicy
from billing.stripe_client import stripe_client
from billing.subscriptions import (
    Preview,
    _plan_of,
    billable_seats,
    preview_lines,
    seat_holders,
    subscription_sync,
)
from common.errors import ServiceError
from teams.models import Organization
from teams.services import audit_record

# A scheduled flag outlives its task's countdown by this much: if a worker is down, the next
# change schedules again after it, and nightly reconciliation catches the rest.
SCHEDULED_GRACE = 300
# Held while one sync talks to Stripe, so that two syncs cannot finish in the wrong order.
LOCK_TTL = 60


class SyncBusy(Exception):
    """Another sync of the same organization is running; the task retries shortly."""


# --- Seat limit -------------------------------------------------------------------------------


def seat_limit_guard(*, organization: Organization, adding: int, pending: int) -> None:
    """Refuse a member (or an invitation) that would pass the `team_members` limit.

    teams calls this while it holds the organization's row lock, so the count it sees cannot
    change before the membership is written. Open invitations count as taken seats.
    """
    decision = entitlements.check(organization, "team_members", adding + pending)
    if decision.allowed or decision.reason == entitlements.Reason.UNKNOWN_FEATURE:
        return  # a catalog without the feature sets no limit
    if decision.reason != entitlements.Reason.LIMIT_REACHED:
        raise EntitlementError(decision)
    waiting = f" and {pending} invitation{'s are' if pending != 1 else ' is'} open" if pending else ""
    raise EntitlementError(
        decision,
        f"{organization.name} has {decision.used} of its {decision.limit} member seats taken{waiting}. "
        "Upgrade the plan or add a seat pack to make room.",
    )


# --- Keeping Stripe's quantity in step ---------------------------------------------------------


def _scheduled_key(organization_id: int) -> str:
    return f"billing:seat-sync:scheduled:{organization_id}"


def _lock_key(organization_id: int) -> str:
    return f"billing:seat-sync:lock:{organization_id}"


def seat_sync_schedule(*, organization_id: int) -> bool:
    """After a membership change has committed: make sure one sync is on its way.

    Returns whether this call scheduled it (False: one is already waiting and will read the
    count this change left behind, or the organization has no paid subscription).
    """
    paying = OrgSubscription.objects.filter(
        organization_id=organization_id, stripe_subscription_id__isnull=False
    ).exists()
    if not paying:
        return False
    delay = settings.BILLING_SEAT_SYNC_DELAY
    if not cache.add(_scheduled_key(organization_id), 1, timeout=delay + SCHEDULED_GRACE):
        return False
    from billing.tasks import seat_sync

    try:
        seat_sync.apply_async((organization_id,), countdown=delay)
    except Exception:
        cache.delete(_scheduled_key(organization_id))  # let the next change try again
        raise
    return True


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
    token = uuid.uuid4().hex
    if not cache.add(_lock_key(organization_id), token, timeout=LOCK_TTL):
        raise SyncBusy(f"a seat sync for organization {organization_id} is running")
    try:
        return _sync(organization_id, attempt or token)
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
    subscription_sync(subscription_id=remote.id)
    audit_record(
        organization=organization,
        action="billing.seats_changed",
        target=plan.key,
        data={"from": current, "to": target, "proration_behavior": behavior},
    )
    return SeatSync(current, target, behavior)


# --- What one more seat costs ------------------------------------------------------------------


@dataclass(frozen=True)
class SeatPreview:
    plan: Plan
    seats: int  # billed now
    next_seat: int  # the number of the seat one more member takes
    marginal: int  # what it adds per billing interval
    tier_amount: int  # the per-seat price of the tier it falls in
    currency: str
    interval: str
    policy: str
    prorated: int | None = None  # charged (or credited) for the rest of this period
    upcoming: Preview | None = None  # the next invoice, with the change

    @property
    def invoiced_now(self) -> bool:
        return self.policy == SeatPolicy.INVOICE


def _tier_amount(line: PlanLineItem, seat: int) -> int:
    """The per-seat price of the tier seat number `seat` falls in (with volume tiers, the price
    every seat pays at that count)."""
    tiers = [pricing.Tier.from_dict(t) for t in line.tiers or []]
    if not tiers:
        return line.unit_amount or 0
    return next(t for t in tiers if t.up_to is None or seat <= t.up_to).unit_amount


def seat_preview(*, organization: Organization, with_invoice: bool = False) -> SeatPreview | None:
    """What adding one member costs on the organization's per-seat plan, from the plan's tiers
    (no network); with `with_invoice`, also the prorated amount and the next invoice as Stripe
    computes them for that change. None without a per-seat subscription."""
    subscription = (
        OrgSubscription.objects.select_related("plan", "pending_plan")
        .filter(organization=organization)
        .first()
    )
    if subscription is None or not subscription.applies:
        return None
    # A downgrade waiting for the period end is already what Stripe bills seats by.
    plan = subscription.pending_plan or subscription.plan
    line = plan.seat_item()
    if line is None:
        return None
    seats = billable_seats(organization, plan=plan)
    next_seat = seat_holders(organization) + 1
    # Inside the plan's minimum a new member fills a seat already paid for.
    marginal = 0
    if next_seat > seats:
        marginal = pricing.marginal(
            quantity=seats, unit_amount=line.unit_amount, tiers=line.tiers, tiers_mode=line.tiers_mode or None
        )
    preview = SeatPreview(
        plan=plan,
        seats=seats,
        next_seat=next_seat,
        marginal=marginal,
        tier_amount=_tier_amount(line, next_seat),
        currency=plan.currency,
        interval=plan.interval,
        policy=plan.seat_policy,
    )
    if not with_invoice or not subscription.stripe_subscription_id or next_seat <= seats:
        return preview
    prorated, upcoming = _invoice_after(subscription, line, next_seat)
    return replace(preview, prorated=prorated, upcoming=upcoming)


def _is_proration(line) -> bool:
    parent = line.get("parent") or {}
    details = parent.get("subscription_item_details") or parent.get("invoice_item_details") or {}
    return bool(details.get("proration"))


def _invoice_after(subscription: OrgSubscription, line: PlanLineItem, quantity: int):
    """Stripe's own numbers for setting the seat quantity to `quantity`: the prorated amount,
    and the invoice that follows (at once under "invoice now", else the next renewal)."""
    client = stripe_client()
    remote = client.v1.subscriptions.retrieve(subscription.stripe_subscription_id)
    item = _seat_item(remote, line)
    if item is None:
        return None, None
    current = item.quantity or 0
    behavior = _proration_behavior(line.plan.seat_policy, increase=quantity > current)
    invoice = client.v1.invoices.create_preview(
        {
            "customer": remote.customer,
            "subscription": remote.id,
            "subscription_details": {
                "items": [{"id": item.id, "quantity": quantity}],
                "proration_behavior": behavior,
            },
        }
    )
    lines = invoice.lines.data
    prorated = sum(li.amount for li in lines if _is_proration(li))
    upcoming = Preview(
        amount_due=invoice.amount_due,
        currency=invoice.currency,
        lines=preview_lines(lines),
        next_payment_at=None if behavior == "always_invoice" else subscription.current_period_end,
        immediate=behavior == "always_invoice",
    )
    return prorated, upcoming


# --- Deleting an organization -------------------------------------------------------------------


def organization_deleted(*, organization: Organization) -> None:
    """teams is deleting `organization` (inside its transaction): cancel the subscription once
    that commits."""
    from billing.tasks import subscription_cancel_deleted

    subscription_cancel_deleted.delay_on_commit(organization.pk)


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
