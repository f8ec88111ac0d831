"""Changing a subscription: previews, upgrades now, downgrades at period end, cancel, resume,
refund, the portal."""

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import stripe
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from billing import discounts, selectors, taxes
from billing.gateway.client import stripe_client
from billing.gateway.customers import customer_ensure
from billing.models import (
    PLAN_STATUSES,
    Addon,
    OrgSubscription,
    Payment,
    Plan,
    PlanLineItem,
    SubscriptionStatus,
)
from billing.seats.counts import billable_seats, seat_holders
from billing.subscriptions.checkout import _purchasable
from billing.subscriptions.refunds import charge_refunded
from billing.subscriptions.remote import _ts
from billing.subscriptions.sync import subscription_sync
from common.errors import ServiceError
from teams.models import Organization, User
from teams.services import audit_record


@dataclass(frozen=True)
class Preview:
    amount_due: int
    currency: str
    lines: list[tuple[str, int]]
    next_payment_at: datetime | None
    immediate: bool
    # During a trial nothing is charged now: `amount_due` is the first charge, at `next_payment_at`.
    trial: bool = False


def _seat_label(first: int, last: int) -> str:
    return f"Seat {first}" if first == last else f"Seats {first}\u2013{last}"


def _item_label(item: PlanLineItem, quantity: int) -> str:
    if item.kind == PlanLineItem.Kind.FLAT:
        return f"{item.plan.product.name} fee"
    if item.kind == PlanLineItem.Kind.PER_SEAT:
        return _seat_label(1, max(quantity, 1))
    return item.feature.name if item.feature_id else item.plan.product.name


def _is_proration(line) -> bool:
    parent = line.get("parent") or {}
    details = parent.get("subscription_item_details") or parent.get("invoice_item_details") or {}
    return bool(details.get("proration"))


def preview_lines(lines) -> list[tuple[str, int]]:
    """Invoice lines as a person reads them: named after the plan's line items ("Platform fee",
    "Seats 1\u20135", one row per seat tier), not Stripe's "1 \u00d7 Platform"."""
    lines = list(lines)
    price_ids = {((line.get("pricing") or {}).get("price_details") or {}).get("price") for line in lines} - {
        None
    }
    items = {
        item.stripe_price_id: item
        for item in PlanLineItem.objects.filter(stripe_price_id__in=price_ids).select_related(
            "plan__product", "feature"
        )
    }
    named = []
    for line in lines:
        price_id = ((line.get("pricing") or {}).get("price_details") or {}).get("price")
        item = items.get(price_id)
        quantity = line.get("quantity") or 1
        if item is None:
            named.append((line.description or "", line.amount))
        elif _is_proration(line):
            label = "Unused time on" if line.amount < 0 else "Remaining time on"
            named.append((f"{label} {_item_label(item, quantity)}", line.amount))
        elif item.kind == PlanLineItem.Kind.PER_SEAT and item.tiers:
            breakdown = item.breakdown(quantity)
            if breakdown.total == line.amount:
                named.extend((_seat_label(t.first, t.last), t.amount) for t in breakdown.lines)
            else:
                named.append((_item_label(item, quantity), line.amount))
        else:
            named.append((_item_label(item, quantity), line.amount))
    return named


def _subscription_for_change(organization: Organization) -> OrgSubscription:
    subscription = OrgSubscription.objects.select_related("plan").filter(organization=organization).first()
    if subscription is None or not subscription.stripe_subscription_id or not subscription.applies:
        raise ServiceError("no_subscription", "There is no active subscription to change.", status=409)
    return subscription


def _read_back(subscription: OrgSubscription) -> None:
    """Stripe's subscription no longer takes changes and Tally has not heard why (a webhook late
    or lost: canceled from the dashboard, a lost dispute): read it back, and refuse the change as
    Tally would have, had it known. Returns when it still applies."""
    subscription_sync(subscription_id=subscription.stripe_subscription_id)
    _subscription_for_change(subscription.organization)


def _remote(subscription: OrgSubscription, client):
    remote = client.v1.subscriptions.retrieve(subscription.stripe_subscription_id)
    if remote.status not in PLAN_STATUSES:
        _read_back(subscription)
    return remote


def _update(subscription: OrgSubscription, params: dict, options: dict | None = None) -> None:
    try:
        stripe_client().v1.subscriptions.update(subscription.stripe_subscription_id, params, options or {})
    except stripe.InvalidRequestError:
        # Ended in Stripe meanwhile (Stripe refuses most changes to a canceled subscription).
        _read_back(subscription)
        raise


def _item_changes(remote, new_plan: Plan, seats: int) -> list[dict]:
    """Items for `subscriptions.update`: every current item removed or swapped, every line item
    of the new plan present once."""
    current = list(remote["items"].data)
    changes = []
    wanted = list(_purchasable(new_plan))
    # Recurring add-ons stay on the subscription through a plan change (Stripe bills every item
    # of a subscription at one interval: one on another interval is removed first).
    addons = {
        a.stripe_price_id: a
        for a in Addon.objects.filter(
            kind=Addon.Kind.RECURRING, stripe_price_id__in=[item.price.id for item in current]
        )
    }
    for item in current:
        addon = addons.get(item.price.id)
        if addon is not None:
            if addon.interval != new_plan.interval:
                raise ServiceError(
                    "addon_interval_mismatch",
                    f"{addon.name} is billed every {addon.interval}: remove it before moving to "
                    f"{new_plan.name}.",
                    field="plan",
                )
            continue
        changes.append({"id": item.id, "deleted": True})
    for line in wanted:
        entry = {"price": line.stripe_price_id}
        if line.kind == PlanLineItem.Kind.PER_SEAT:
            entry["quantity"] = seats
        elif line.kind == PlanLineItem.Kind.FLAT:
            entry["quantity"] = 1
        changes.append(entry)
    return changes


def _is_upgrade(current: Plan, new: Plan, seats: int) -> bool:
    def monthly(plan: Plan) -> int:
        total = plan.total(seats=seats)
        return math.ceil(total / 12) if plan.interval == "year" else total

    return current.interval != new.interval or monthly(new) >= monthly(current)


def _same_plan(subscription: OrgSubscription, plan: Plan) -> bool:
    """Choosing the current plan is no change, unless a downgrade is pending: then it keeps the
    current plan, withdrawing the downgrade."""
    if plan.pk != subscription.plan_id:
        if plan.pk == subscription.pending_plan_id:
            when = subscription.pending_plan_at
            raise ServiceError(
                "already_scheduled",
                f"{plan.name} is already scheduled" + (f" from {when:%-d %B %Y}." if when else "."),
                field="plan",
            )
        return False
    if subscription.pending_plan_id is None:
        raise ServiceError("same_plan", "That is the current plan.", field="plan")
    return True


MAX_CHANGE_SEATS = 1000  # as for prepaid seats bought on the seats page


def change_seats(organization: Organization, plan: Plan, requested=None) -> int:
    """The seat quantity a change to `plan` bills. On a prepaid-seat plan the person picks it
    (never fewer than the members or the plan's minimum); otherwise it is the seat holders."""
    if not plan.seats_prepaid:
        return billable_seats(organization)
    if requested is None:
        return billable_seats(organization, plan=plan)
    text = str(requested).strip()
    if not text.isdigit() or len(text) > 6:
        raise ServiceError("invalid_seats", "The number of seats is a whole number.", field="seats")
    seats, members = int(text), seat_holders(organization)
    if seats < members:
        raise ServiceError(
            "seats_below_members",
            f"{organization.name} has {members} members: choose at least {members} seats.",
            field="seats",
        )
    if seats < plan.seat_minimum:
        raise ServiceError(
            "seats_below_minimum", f"{plan.name} bills at least {plan.seat_minimum} seats.", field="seats"
        )
    if seats > MAX_CHANGE_SEATS:
        raise ServiceError("seats_above_maximum", f"At most {MAX_CHANGE_SEATS} seats online.", field="seats")
    return seats


def subscription_change_preview(*, organization: Organization, plan: Plan, seats=None) -> Preview:
    """What changing to `plan` costs: now for an upgrade (prorated), at renewal for a downgrade
    (and for keeping the current plan while a downgrade is pending). `seats`, on a prepaid-seat
    plan, is the quantity chosen."""
    subscription = _subscription_for_change(organization)
    withdraw = _same_plan(subscription, plan)
    client = stripe_client()
    remote = _remote(subscription, client)
    seats = billable_seats(organization) if withdraw else change_seats(organization, plan, seats)
    upgrade = not withdraw and _is_upgrade(subscription.plan, plan, seats)
    # During a trial there is nothing to prorate: the change applies now, the trial goes on, and
    # what matters is the first invoice, at the trial's end.
    trial = remote.status == SubscriptionStatus.TRIALING
    preview = client.v1.invoices.create_preview(
        {
            "customer": remote.customer,
            "subscription": remote.id,
            "subscription_details": {
                "items": _item_changes(remote, plan, seats),
                "proration_behavior": "always_invoice" if upgrade and not trial else "none",
            },
        }
    )
    if trial:
        next_payment_at = _ts(remote.trial_end) or subscription.trial_end
    else:
        next_payment_at = _ts(preview.get("next_payment_attempt")) or subscription.current_period_end
    return Preview(
        amount_due=preview.amount_due,
        currency=preview.currency,
        lines=preview_lines(preview.lines.data)
        + discounts.discount_lines(preview)
        + taxes.tax_lines(preview),
        next_payment_at=next_payment_at,
        immediate=upgrade and not trial,
        trial=trial,
    )


def subscription_change(
    *, organization: Organization, plan: Plan, actor: User, seats=None
) -> OrgSubscription:
    """Upgrades (and interval switches) apply now with proration, invoiced at once;
    downgrades apply at the end of the period already paid for. Choosing the current plan
    while a downgrade is pending withdraws the downgrade. `seats`, on a prepaid-seat plan, is
    the quantity chosen."""
    subscription = _subscription_for_change(organization)
    if _same_plan(subscription, plan):
        return _pending_change_withdraw(subscription, actor)
    seats = change_seats(organization, plan, seats)
    remote = _remote(subscription, stripe_client())
    upgrade = _is_upgrade(subscription.plan, plan, seats)
    params = {
        "items": _item_changes(remote, plan, seats),
        "proration_behavior": "always_invoice" if upgrade else "none",
        "metadata": {"tally_plan": plan.key},
    }
    # Keyed by the state it changes from and what it asks: a retried click repeats, a later or
    # different change never reuses a key (Stripe refuses a key sent with other parameters).
    version = int(subscription.updated_at.timestamp())
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    key = f"tally-change-{remote.id}-{plan.key}-{version}-{digest}"
    _update(subscription, params, {"idempotency_key": key})
    if not upgrade:
        OrgSubscription.objects.filter(pk=subscription.pk).update(
            pending_plan=plan, pending_plan_at=subscription.current_period_end
        )
    audit_record(
        organization=organization,
        action="billing.plan_changed",
        actor=actor,
        target=plan.key,
        data={"from": subscription.plan.key, "when": "now" if upgrade else "period_end"},
    )
    return subscription_sync(subscription_id=remote.id)


def _pending_change_withdraw(subscription: OrgSubscription, actor: User) -> OrgSubscription:
    """A downgrade is waiting for the period's end: Stripe already bills the new plan's prices
    from the renewal (no proration), so put the current plan's prices back, then forget it."""
    remote = _remote(subscription, stripe_client())
    pending = subscription.pending_plan
    params = {
        "items": _item_changes(remote, subscription.plan, billable_seats(subscription.organization)),
        "proration_behavior": "none",
        "metadata": {"tally_plan": subscription.plan.key},
    }
    version = int(subscription.updated_at.timestamp())
    _update(subscription, params, {"idempotency_key": f"tally-withdraw-{remote.id}-{pending.key}-{version}"})
    OrgSubscription.objects.filter(pk=subscription.pk, pending_plan=pending).update(
        pending_plan=None, pending_plan_at=None
    )
    audit_record(
        organization=subscription.organization,
        action="billing.plan_change_withdrawn",
        actor=actor,
        target=subscription.plan.key,
        data={"withdrawn": pending.key},
    )
    return subscription_sync(subscription_id=remote.id)


def _cancel_at_period_end(organization: Organization, actor: User, value: bool) -> OrgSubscription:
    subscription = _subscription_for_change(organization)
    _update(subscription, {"cancel_at_period_end": value})
    audit_record(
        organization=organization,
        action="billing.cancel_scheduled" if value else "billing.cancel_withdrawn",
        actor=actor,
        target=subscription.plan.key,
    )
    return subscription_sync(subscription_id=subscription.stripe_subscription_id)


def subscription_cancel(*, organization: Organization, actor: User) -> OrgSubscription:
    """End the subscription when the paid period ends; everything stays until then."""
    return _cancel_at_period_end(organization, actor, True)


def subscription_resume(*, organization: Organization, actor: User) -> OrgSubscription:
    return _cancel_at_period_end(organization, actor, False)


def money_back_deadline(subscription: OrgSubscription | None) -> datetime | None:
    if subscription is None or subscription.first_paid_at is None:
        return None
    return subscription.first_paid_at + timedelta(days=settings.BILLING_MONEY_BACK_DAYS)


def _first_payment(subscription: OrgSubscription) -> Payment | None:
    """The subscription's first payment: the one the money-back guarantee gives back."""
    paid = Payment.objects.filter(organization=subscription.organization, amount_paid__gt=0).exclude(
        stripe_charge_id=""
    )
    first = (
        paid.filter(stripe_subscription_id=subscription.stripe_subscription_id)
        .order_by("paid_at", "created_at", "pk")
        .first()
    )
    if first is None and subscription.first_paid_at:
        # Recorded before payments named their subscription: the one that opened the window.
        first = paid.filter(stripe_subscription_id="", paid_at=subscription.first_paid_at).first()
    return first


def subscription_refund_and_cancel(
    *, organization: Organization, actor: User, now: datetime | None = None
) -> Payment | None:
    """The money-back guarantee: within the window after the first payment, cancel at once and
    refund that first payment (not later ones, nor other subscriptions' payments)."""
    subscription = _subscription_for_change(organization)
    deadline = money_back_deadline(subscription)
    now = now or timezone.now()
    if deadline is None or now >= deadline:
        raise ServiceError(
            "refund_window_closed",
            f"Full refunds are possible within {settings.BILLING_MONEY_BACK_DAYS} days of the first payment.",
            status=409,
        )
    first = _first_payment(subscription)
    # What a partial refund (a goodwill gesture from the dashboard) left of it is given back too.
    returnable = (Payment.Status.PAID, Payment.Status.PARTIALLY_REFUNDED)
    payments = [first] if first is not None and first.status in returnable else []
    client = stripe_client()
    for payment in payments:
        # Stripe refuses to refund a charged-back payment: its money comes back through the
        # dispute. Refuse before anything changes rather than cancel and then fail.
        if client.v1.charges.retrieve(payment.stripe_charge_id).disputed:
            raise ServiceError(
                "payment_disputed",
                "The first payment is disputed with the card issuer; its money is returned through "
                "the dispute, so it cannot also be refunded.",
                status=409,
            )
    returned = sum(p.amount_paid - p.amount_refunded for p in payments)
    # Refund first, then cancel: if Stripe fails in between, the subscription is still there to
    # find, and trying again replays the refund (same key) and cancels. Canceled first, a failed
    # refund would leave nothing for the retry to act on.
    for payment in payments:
        client.v1.refunds.create(
            {"charge": payment.stripe_charge_id, "reason": "requested_by_customer"},
            {"idempotency_key": f"tally-refund-{payment.stripe_invoice_id}"},
        )
        charge_refunded(charge_id=payment.stripe_charge_id)
    client.v1.subscriptions.cancel(subscription.stripe_subscription_id)
    audit_record(
        organization=organization,
        action="billing.refunded_and_canceled",
        actor=actor,
        target=subscription.plan.key,
        data={"refunded": returned},
    )
    subscription_sync(subscription_id=subscription.stripe_subscription_id)
    return payments[0] if payments else None


def _same_origin(url: str, site: str) -> bool:
    def origin(value: str):
        parts = urlsplit(value)
        default = {"http": 80, "https": 443}.get(parts.scheme)
        return parts.scheme, (parts.hostname or "").lower(), parts.port or default

    try:
        parts = urlsplit(url)
        return not (parts.username or parts.password) and origin(url) == origin(site)
    except ValueError:  # a malformed port or host
        return False


def portal_url(*, organization: Organization, return_url: str | None = None) -> str:
    """A Stripe customer portal session that returns to `return_url`, which must be on this
    site (an open redirect through Stripe's page would lend it Stripe's trust); by default the
    organization's billing page."""
    site = settings.SITE_URL
    return_url = return_url or site + reverse("billing", args=[organization.slug])
    if not _same_origin(return_url, site):
        raise ServiceError(
            "invalid_return_url", f"The return URL must be on this site ({site}).", field="return_url"
        )
    customer_id = customer_ensure(organization=organization)
    session = stripe_client().v1.billing_portal.sessions.create(
        {"customer": customer_id, "return_url": return_url}
    )
    return session.url


def upcoming_invoice(*, organization: Organization) -> Preview | None:
    subscription = OrgSubscription.objects.filter(organization=organization).first()
    if subscription is None or not subscription.stripe_subscription_id or not subscription.applies:
        return None
    try:
        preview = stripe_client().v1.invoices.create_preview(
            {
                "customer": selectors.stripe_customer_id_of(organization),
                "subscription": subscription.stripe_subscription_id,
            }
        )
    except stripe.InvalidRequestError:
        return None  # e.g. canceling at period end: nothing comes next
    return Preview(
        amount_due=preview.amount_due,
        currency=preview.currency,
        lines=preview_lines(preview.lines.data)
        + discounts.discount_lines(preview)
        + taxes.tax_lines(preview),
        next_payment_at=_ts(preview.get("next_payment_attempt")) or _ts(preview.period_end),
        immediate=False,
        trial=subscription.status == SubscriptionStatus.TRIALING,
    )
