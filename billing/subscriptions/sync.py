"""The organization's subscription as Stripe has it: synced by id, one trial and one live
subscription per organization."""

from dataclasses import dataclass
from datetime import timedelta

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from billing.gateway.client import stripe_client
from billing.models import (
    ENDED_STATUSES,
    PLAN_STATUSES,
    OrgSubscription,
    Plan,
    PlanLineItem,
    SubscriptionDuplicate,
    SubscriptionStatus,
    TrialRecord,
)
from billing.notifications import duplicate_refunded_queue, subscription_notices_queue, trial_ending_queue
from billing.subscriptions import periods
from billing.subscriptions.refunds import charge_refunded
from billing.subscriptions.remote import _charge_of, _invalidate_on_commit, _organization_of, _ts
from billing.webhooks.registry import on
from teams.models import Organization
from teams.services import audit_record


def _plan_of(remote) -> tuple[Plan | None, int]:
    """The catalog plan behind a Stripe subscription's items, and its seat quantity.

    Prices carry their plan and line item in metadata, which survives a price being replaced
    (an archived price still names its plan); the price id is the fallback.
    """
    wanted = []
    for item in remote["items"].data:
        meta = item.price.metadata or {}
        wanted.append((item, meta.get("tally_plan"), meta.get("tally_item")))
    lines = list(
        PlanLineItem.objects.select_related("plan").filter(
            Q(stripe_price_id__in=[item.price.id for item, _, _ in wanted])
            | Q(plan__key__in=[key for _, key, _ in wanted if key])
        )
    )
    plan, seats = None, 1
    for item, plan_key, item_key in wanted:
        line = next((li for li in lines if li.plan.key == plan_key and li.key == item_key), None)
        line = line or next((li for li in lines if li.stripe_price_id == item.price.id), None)
        if line is None:
            continue
        plan = plan or line.plan
        if line.kind == PlanLineItem.Kind.PER_SEAT:
            seats = item.quantity or 1
    return plan, seats


_SYNCED_FIELDS = (
    "plan_id",
    "status",
    "seats",
    "stripe_subscription_id",
    "billing_cycle_anchor",
    "current_period_start",
    "current_period_end",
    "cancel_at_period_end",
    "trial_end",
    "grace_until",
    "pending_plan_id",
    "pending_plan_at",
    "price_ids",
)


def _state(subscription: OrgSubscription) -> tuple:
    return tuple(getattr(subscription, name) for name in _SYNCED_FIELDS)


@dataclass(frozen=True)
class _Conflict:
    """The organization already has another live subscription in Tally."""

    local: OrgSubscription


def _remote_subscription(subscription_id: str):
    # Items carry their price already; the latest invoice dates a failed payment's grace.
    return stripe_client().v1.subscriptions.retrieve(subscription_id, {"expand": ["latest_invoice"]})


def subscription_sync(*, subscription_id: str, _settling: bool = False) -> OrgSubscription | None:
    """Make Tally's record of a subscription match Stripe's current state.

    The state is re-read from Stripe, so whichever event triggered this (and in whatever order
    events arrived) the result is the same. A failed payment's grace period counts from the
    unpaid invoice, in Stripe's time (which a test clock moves), not from when we heard of it.

    Around the record itself: a subscription that ended (at once, or unpaid) takes what remains
    of its credit allowance with it; a second live subscription of the same organization is
    canceled and refunded (the one Tally tracks stays); a second trial is ended in Stripe.
    Returns the organization's subscription as Tally tracks it.
    """
    remote = _remote_subscription(subscription_id)
    organization = _organization_of(remote.metadata, remote.customer)
    if organization is None:
        return None
    if remote.status in ENDED_STATUSES:
        periods.subscription_ended(organization=organization, subscription_id=remote.id, reason=remote.status)
    outcome = _record(organization, remote)
    if isinstance(outcome, _Conflict):
        return _conflict_settle(organization, remote, outcome.local, settling=_settling)
    if (
        outcome is not None
        and remote.status == SubscriptionStatus.TRIALING
        and _trial_record(organization, remote).stripe_subscription_id != remote.id
    ):
        _second_trial_end(organization, remote)
        return subscription_sync(subscription_id=remote.id, _settling=_settling)
    return outcome


def _record(organization: Organization, remote) -> OrgSubscription | _Conflict | None:
    plan, seats = _plan_of(remote)
    if plan is None:
        return None
    first = remote["items"].data[0] if remote["items"].data else None
    period_start = _ts(first.current_period_start) if first else None
    period_end = _ts(first.current_period_end) if first else None
    unpaid = remote.latest_invoice if isinstance(remote.latest_invoice, stripe.Invoice) else None
    failed_at = _ts(unpaid.created) if unpaid else None
    with transaction.atomic():
        # The organization's row serializes its syncs, also before its first subscription row
        # exists: of two subscriptions completing at once, one is recorded, the other is seen.
        Organization.objects.select_for_update().filter(pk=organization.pk).first()
        local = OrgSubscription.objects.select_for_update().filter(organization=organization).first()
        if local and local.stripe_subscription_id not in (None, remote.id) and local.applies:
            if remote.status in PLAN_STATUSES:
                return _Conflict(local)  # two live subscriptions: settled outside the lock
            # An older, ended subscription must not overwrite the one in force.
            return local
        previous = (local.plan_id, local.status, local.seats) if local else None
        told = (
            (local.plan, local.status, local.cancel_at_period_end, local.stripe_subscription_id)
            if local
            else None
        )
        before = _state(local) if local else None
        local = local or OrgSubscription(organization=organization, plan=plan)
        if local.stripe_subscription_id not in (None, remote.id):
            # A new subscription replaces an ended one: the change the old one was waiting for
            # ended with it.
            local.pending_plan, local.pending_plan_at = None, None
        effective_plan = plan
        if local.pending_plan_id and local.pending_plan_id == plan.pk:
            if local.pending_plan_at and period_start and period_start < local.pending_plan_at:
                effective_plan = local.plan  # a downgrade waits for the period it was paid for
            else:
                local.pending_plan, local.pending_plan_at = None, None
        grace_days = timedelta(days=settings.BILLING_GRACE_DAYS)
        if remote.status == SubscriptionStatus.PAST_DUE:
            local.grace_until = local.grace_until or (failed_at or timezone.now()) + grace_days
        else:
            local.grace_until = None
        local.plan = effective_plan
        local.status = remote.status
        local.seats = seats
        local.stripe_subscription_id = remote.id
        local.billing_cycle_anchor = _ts(remote.billing_cycle_anchor) or local.billing_cycle_anchor
        local.current_period_start = period_start or local.current_period_start
        local.current_period_end = period_end
        local.cancel_at_period_end = bool(remote.cancel_at_period_end)
        local.trial_end = _ts(remote.trial_end)
        local.price_ids = sorted(item.price.id for item in remote["items"].data)
        if local.pk and _state(local) == before:
            return local  # a repeated or older event: Stripe's state is already ours
        local.updated_at = timezone.now()
        local.save()
        subscription_notices_queue(subscription=local, previous=told)
        current = (local.plan_id, local.status, local.seats)
        if current != previous:
            audit_record(
                organization=organization,
                action="billing.subscription_synced",
                target=local.plan.key,
                data={"status": local.status, "seats": local.seats, "stripe_subscription": remote.id},
            )
        _invalidate_on_commit(organization)
    return local


def _trial_record(organization: Organization, remote) -> TrialRecord:
    """The organization's (or its customer's) one trial, recorded by the first trial seen."""
    used = Q(organization=organization) | Q(stripe_customer_id=remote.customer)
    record = TrialRecord.objects.filter(used).first()
    if record is not None:
        return record
    try:
        with transaction.atomic():
            return TrialRecord.objects.create(
                organization=organization,
                stripe_customer_id=remote.customer,
                stripe_subscription_id=remote.id,
                started_at=_ts(remote.trial_start) or timezone.now(),
                trial_end=_ts(remote.trial_end),
            )
    except IntegrityError:
        return TrialRecord.objects.filter(used).get()  # recorded by a concurrent sync


def _second_trial_end(organization: Organization, remote) -> None:
    """A trial the organization is not entitled to (it had one): end it now, so Stripe
    invoices the first period at once."""
    stripe_client().v1.subscriptions.update(
        remote.id, {"trial_end": "now"}, {"idempotency_key": f"tally-second-trial-{remote.id}"}
    )
    audit_record(organization=organization, action="billing.second_trial_refused", target=remote.id)


def _conflict_settle(organization: Organization, remote, local: OrgSubscription, *, settling: bool):
    """`remote` is live while Tally tracks another live subscription. If Stripe agrees that the
    tracked one is live, `remote` is the duplicate; if the tracked one ended unheard (a lost
    webhook), record that, and `remote` becomes the one tracked."""
    tracked = _remote_subscription(local.stripe_subscription_id)
    if tracked.status in PLAN_STATUSES:
        subscription_duplicate_end(organization=organization, remote=remote, kept_id=tracked.id)
        return OrgSubscription.objects.filter(pk=local.pk).first()
    if settling:
        return local  # the tracked one would not record its end: reconciliation reports it
    subscription_sync(subscription_id=tracked.id, _settling=True)
    return subscription_sync(subscription_id=remote.id, _settling=True)


def subscription_duplicate_end(*, organization: Organization, remote, kept_id: str) -> SubscriptionDuplicate:
    """A second live subscription of one organization: cancel it at once, refund everything it
    charged, audit it and tell the owners. Every step is idempotent, so a replay (or a retry
    after a partial run) finishes the job; only the run that marks it resolved audits and
    sends the message."""
    duplicate, _ = SubscriptionDuplicate.objects.get_or_create(
        stripe_subscription_id=remote.id,
        defaults={"organization": organization, "kept_subscription_id": kept_id, "currency": remote.currency},
    )
    if duplicate.resolved_at is not None:
        return duplicate
    client = stripe_client()
    current = client.v1.subscriptions.retrieve(remote.id)
    if current.status not in ("canceled", "incomplete_expired"):
        client.v1.subscriptions.cancel(
            remote.id,
            {"cancellation_details": {"comment": f"duplicate of {kept_id}"}},
            {"idempotency_key": f"tally-cancel-duplicate-{remote.id}"},
        )
    refunded = disputed = 0
    listed = client.v1.invoices.list({"subscription": remote.id, "status": "paid", "limit": 100})
    for listed_invoice in listed.auto_paging_iter():
        if listed_invoice.amount_paid <= 0:
            continue
        invoice = client.v1.invoices.retrieve(
            listed_invoice.id, {"expand": ["payments.data.payment.payment_intent"]}
        )
        charge_id = _charge_of(invoice)
        if not charge_id:
            continue
        charge = client.v1.charges.retrieve(charge_id)
        if charge.disputed:
            # Charged back: the dispute returns the money, and Stripe refuses a refund.
            disputed += invoice.amount_paid
            continue
        if charge.amount_refunded < charge.amount:
            client.v1.refunds.create(
                {"charge": charge_id, "reason": "duplicate"},
                {"idempotency_key": f"tally-refund-duplicate-{invoice.id}"},
            )
        refunded += invoice.amount_paid
        charge_refunded(charge_id=charge_id)
    with transaction.atomic():
        won = SubscriptionDuplicate.objects.filter(pk=duplicate.pk, resolved_at=None).update(
            resolved_at=timezone.now(), amount_refunded=refunded, amount_disputed=disputed
        )
        if won:
            audit_record(
                organization=organization,
                action="billing.duplicate_subscription_canceled",
                target=remote.id,
                data={
                    "kept": kept_id,
                    "refunded": refunded,
                    "disputed": disputed,
                    "currency": duplicate.currency,
                },
            )
            duplicate_refunded_queue(duplicate=duplicate)
    duplicate.refresh_from_db()
    return duplicate


# Subscriptions that can still charge or grant: everything but the ended for good.
LIVE_STATUSES = ("active", "trialing", "past_due", "unpaid", "incomplete", "paused")


def live_subscriptions(customer_id: str, *, client=None) -> list:
    """The customer's subscriptions in Stripe that can still charge, read from Stripe itself:
    a webhook that has not arrived yet must not hide one."""
    client = client or stripe_client()
    listed = client.v1.subscriptions.list({"customer": customer_id, "status": "all", "limit": 100})
    return [sub for sub in listed.auto_paging_iter() if sub.status in LIVE_STATUSES]


@on("customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted")
def _subscription_changed(*, kind: str, object_id: str) -> OrgSubscription | None:
    return subscription_sync(subscription_id=object_id)


@on("customer.subscription.trial_will_end")
def _trial_will_end(*, kind: str, object_id: str) -> None:
    """Three days before a trial ends (Stripe's timing): tell the billing contacts, once per
    trial end."""
    local = subscription_sync(subscription_id=object_id)
    if isinstance(local, OrgSubscription) and local.stripe_subscription_id == object_id:
        trial_ending_queue(subscription=local)
