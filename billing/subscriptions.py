"""Subscriptions through Stripe: customers, checkout, webhook-driven sync, changes, refunds.

Stripe says what was paid; `OrgSubscription` says what the organization may do. Every function
here that calls Stripe does so outside any database transaction, then records the result in a
short one. Webhook handlers re-read the object from Stripe instead of trusting the payload, so
events that arrive twice or out of order end in the same state.
"""

import hashlib
import json
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from djstripe.models import Customer

from billing import allowances, discounts, entitlements, hooks, selectors, taxes
from billing.models import (
    ENDED_STATUSES,
    PLAN_STATUSES,
    Addon,
    CheckoutOutcome,
    DisputeState,
    EntitlementGrant,
    OrgSubscription,
    Payment,
    PaymentDispute,
    Plan,
    PlanCheckout,
    PlanLineItem,
    PromotionCode,
    SubscriptionDuplicate,
    SubscriptionStatus,
    TrialRecord,
)
from billing.services_payments import CheckoutResult, PaymentCheckoutOutcome, payment_checkout_settled
from billing.stripe_client import stripe_client
from common.errors import ServiceError
from teams.models import Membership, Organization, User
from teams.services import audit_record


def _ts(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=UTC) if value else None


def _invalidate_on_commit(organization: Organization) -> None:
    transaction.on_commit(lambda: entitlements.invalidate(organization))


# --- Customers -------------------------------------------------------------------------------


def customer_ensure(*, organization: Organization, test_clock: str | None = None) -> str:
    """The organization's Stripe customer id, creating the customer once.

    The idempotency key makes two concurrent first checkouts create one customer; the metadata
    lets dj-stripe (and a person in the dashboard) link it back to the organization.
    """
    existing = selectors.stripe_customer_id_of(organization)
    if existing:
        return existing
    params = {
        "name": organization.name,
        "metadata": {"djstripe_subscriber": str(organization.pk), "tally_org": organization.slug},
    }
    # Stripe refuses an empty email (nothing to unset on a new customer): leave it out.
    if organization.email:
        params["email"] = organization.email
    if test_clock:
        params["test_clock"] = test_clock
    remote = stripe_client().v1.customers.create(
        params, {"idempotency_key": f"tally-customer-{organization.pk}"}
    )
    Customer.sync_from_stripe_data(remote)
    Customer.objects.filter(id=remote.id).update(subscriber=organization)
    return remote.id


def seat_holders(organization: Organization) -> int:
    """Members whose role takes a paid seat (`BILLING_SEAT_ROLES`; every role by default)."""
    return Membership.objects.filter(organization=organization, role__in=settings.BILLING_SEAT_ROLES).count()


def billable_seats(organization: Organization, *, plan: Plan | None = None) -> int:
    """The seat quantity to bill: the seat holders, and never fewer than the plan's minimum.

    Without `plan`, the plan of the subscription in force (a checkout for a new plan passes it).
    """
    if plan is None:
        subscription = (
            OrgSubscription.objects.select_related("plan").filter(organization=organization).first()
        )
        plan = subscription.plan if subscription and subscription.applies else None
    return max(plan.seat_minimum if plan else 1, seat_holders(organization))


# --- Checkout --------------------------------------------------------------------------------


def _purchasable(plan: Plan) -> list[PlanLineItem]:
    items = list(plan.line_items.all())
    if plan.is_free or plan.is_contact_sales or not plan.is_active or not items:
        raise ServiceError("plan_not_purchasable", f"{plan.name} cannot be bought online.", field="plan")
    if any(not item.stripe_price_id for item in items):
        raise ServiceError(
            "catalog_not_synced", "This plan is not in Stripe yet: run `manage.py catalog_sync`.", status=503
        )
    return items


def checkout_line_items(*, plan: Plan, seats: int, addons: dict[Addon, int]) -> list[dict]:
    lines = []
    for item in _purchasable(plan):
        if item.kind == PlanLineItem.Kind.METERED:
            lines.append({"price": item.stripe_price_id})  # billed on usage: no quantity
        elif item.kind == PlanLineItem.Kind.PER_SEAT:
            lines.append({"price": item.stripe_price_id, "quantity": seats})
        else:
            lines.append({"price": item.stripe_price_id, "quantity": 1})
    for addon, quantity in addons.items():
        if not addon.is_active or not addon.stripe_price_id:
            raise ServiceError("addon_unavailable", f"{addon.name} is not available.", field="addons")
        if not 1 <= quantity <= addon.max_quantity:
            raise ServiceError(
                "invalid_quantity",
                f"Choose between 1 and {addon.max_quantity} of {addon.name}.",
                field="addons",
            )
        if addon.kind == Addon.Kind.RECURRING and addon.interval != plan.interval:
            raise ServiceError(
                "interval_mismatch",
                f"{addon.name} is billed per {addon.interval}; this plan per {plan.interval}.",
                field="addons",
            )
        lines.append({"price": addon.stripe_price_id, "quantity": quantity})
    return lines


def checkout_start(
    *,
    organization: Organization,
    plan: Plan,
    actor: User,
    addons: dict[Addon, int] | None = None,
    test_clock: str | None = None,
    promotion_code: PromotionCode | None = None,
    currency: str | None = None,
) -> str:
    """A Checkout Session for `plan` (and add-ons); returns the URL to send the person to. A
    promotion code brought along (`/pricing/?promo=CODE`) is applied; otherwise the customer may
    type one on Stripe's page."""
    addons = addons or {}
    current = OrgSubscription.objects.filter(organization=organization).first()
    if current and current.stripe_subscription_id and current.applies:
        raise ServiceError(
            "already_subscribed",
            "This organization already has a subscription; change its plan instead.",
            status=409,
        )
    seats = billable_seats(organization)
    lines = checkout_line_items(plan=plan, seats=seats, addons=addons)
    currency = billing_currency(organization) or currency or plan.currency
    if currency not in plan.currencies:
        raise ServiceError(
            "currency_unavailable",
            f"{plan.name} is not sold in {currency.upper()}.",
            field="currency",
        )
    if currency != plan.currency and any(addon.currency != currency for addon in addons):
        raise ServiceError(
            "currency_unavailable", f"Add-ons are sold in {plan.currency.upper()} only.", field="addons"
        )
    customer_id = customer_ensure(organization=organization, test_clock=test_clock)
    live = live_subscriptions(customer_id)
    if live:
        # Paid for, but its webhooks have not reached Tally yet: catch up instead of selling a
        # second subscription.
        for remote in live:
            subscription_sync(subscription_id=remote.id)
        raise ServiceError(
            "already_subscribed",
            "This organization already has a subscription; change its plan instead.",
            status=409,
        )
    base = settings.SITE_URL + reverse("billing", args=[organization.slug])
    metadata = {
        "tally_org": organization.slug,
        "tally_org_id": str(organization.pk),
        "tally_plan": plan.key,
        # Tally's own clock orders two starts (a test clock may give both the same `created`).
        "tally_started_ns": str(time.time_ns()),
    }
    params = {
        "mode": "subscription",
        "customer": customer_id,
        "line_items": lines,
        "client_reference_id": str(organization.pk),
        "success_url": base + "success/?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": base + "?checkout=cancelled",
        "metadata": metadata,
        "subscription_data": {"metadata": metadata},
    }
    if currency != plan.currency:
        params["currency"] = currency
    if plan.trial_days and trial_available(organization=organization, customer_id=customer_id):
        params["subscription_data"]["trial_period_days"] = plan.trial_days
    if settings.USE_STRIPE_TAX:
        # Stripe Tax: the address (and a business's VAT number) entered here is saved on the
        # customer and decides the tax of this and every later invoice.
        params["automatic_tax"] = {"enabled": True}
        params["billing_address_collection"] = "required"
        params["tax_id_collection"] = {"enabled": True}
        params["customer_update"] = {"address": "auto", "name": "auto"}
    if promotion_code is not None:
        params["discounts"] = [{"promotion_code": promotion_code.stripe_promotion_code_id}]
    else:
        params["allow_promotion_codes"] = True
    try:
        session = stripe_client().v1.checkout.sessions.create(params)
    except stripe.InvalidRequestError as error:
        if promotion_code is None or not (error.param or "").startswith("discounts"):
            raise
        # Stripe has the last word on a code (first-time only, a minimum, fully redeemed).
        raise ServiceError(
            "promotion_code_refused",
            f"The code {promotion_code.code} cannot be used here: {error.user_message}",
            field="promo",
        ) from None
    PlanCheckout.objects.get_or_create(
        stripe_session_id=session.id, defaults={"organization": organization, "plan": plan, "actor": actor}
    )
    expired = checkout_sessions_expire_earlier(customer_id=customer_id, keep=session)
    audit_record(
        organization=organization,
        action="billing.checkout_started",
        actor=actor,
        target=plan.key,
        data={
            "session": session.id,
            "seats": seats,
            "addons": {a.key: q for a, q in addons.items()},
            "expired": expired,
            "promotion_code": promotion_code.code if promotion_code else None,
        },
    )
    return session.url


def billing_currency(organization: Organization) -> str | None:
    """The currency the organization is billed in once it has paid: Stripe bills a customer in
    one currency for good."""
    return (
        Payment.objects.filter(organization=organization)
        .order_by("created_at")
        .values_list("currency", flat=True)
        .first()
    )


def trial_available(*, organization: Organization, customer_id: str | None) -> bool:
    """One trial per organization and per Stripe customer, ever; none after a first payment."""
    if OrgSubscription.objects.filter(organization=organization, first_paid_at__isnull=False).exists():
        return False
    used = Q(organization=organization)
    if customer_id:
        used |= Q(stripe_customer_id=customer_id)
    return not TrialRecord.objects.filter(used).exists()


def _started(session) -> tuple[int, str]:
    return int((session.metadata or {}).get("tally_started_ns") or 0), session.id


def checkout_sessions_expire_earlier(*, customer_id: str, keep) -> list[str]:
    """Expire the customer's other open subscription checkouts that started before `keep`, so
    that of two tabs only the later can be paid. Two starts at the same moment agree on which
    session is the later, so one of them stays open, never none; a session that completes
    anyway makes a duplicate subscription, which is ended when it is heard of."""
    client = stripe_client()
    expired = []
    listed = client.v1.checkout.sessions.list({"customer": customer_id, "status": "open", "limit": 100})
    for session in listed.auto_paging_iter():
        if session.id == keep.id or session.mode != "subscription":
            continue
        if _started(session) > _started(keep):
            continue  # a later start: that one expires this
        try:
            client.v1.checkout.sessions.expire(session.id)
        except stripe.InvalidRequestError:
            continue  # completed or expired meanwhile; a completed one is a duplicate to end
        expired.append(session.id)
    return expired


def checkout_session_state(*, organization: Organization, session_id: str) -> dict:
    """What the success page shows: the session as Stripe has it, and whether Tally has caught
    up (the webhook may arrive after the person does)."""
    session = stripe_client().v1.checkout.sessions.retrieve(session_id)
    if (session.metadata or {}).get("tally_org_id") != str(organization.pk):
        raise ServiceError("not_found", "No such checkout for this organization.", status=404)
    subscription = OrgSubscription.objects.filter(organization=organization).first()
    active = bool(
        subscription
        and session.subscription
        and subscription.stripe_subscription_id == session.subscription
        and subscription.applies
    )
    checkout = PlanCheckout.objects.filter(organization=organization, stripe_session_id=session.id).first()
    expired = session.status == "expired" or bool(checkout and checkout.status == CheckoutOutcome.ABANDONED)
    failed = bool(checkout and checkout.status == CheckoutOutcome.FAILED) and not active
    return {
        "status": session.status,
        "payment_status": session.payment_status,
        "active": active,
        "subscription": subscription,
        "expired": expired and not active,
        "failed": failed,
        "failure_message": checkout.failure_message if checkout else "",
        "processing": session.status == "complete" and session.payment_status == "unpaid" and not failed,
        # Nothing more will happen by itself: the page stops polling.
        "final": active or expired or failed,
    }


_SETTLE_FROM = {
    CheckoutOutcome.PROCESSING: [CheckoutOutcome.OPEN],
    CheckoutOutcome.COMPLETED: [CheckoutOutcome.OPEN, CheckoutOutcome.PROCESSING],
    CheckoutOutcome.ABANDONED: [CheckoutOutcome.OPEN],
    CheckoutOutcome.FAILED: [CheckoutOutcome.OPEN, CheckoutOutcome.PROCESSING],
}


def plan_checkout_settle(*, session, status: str, failure_message: str = "") -> PlanCheckout | None:
    """Move a subscription checkout's record on, once: from the states it can come from only,
    so a replayed or late event (an `expired` after `completed`) changes nothing."""
    organization = _organization_of(session.metadata, session.customer)
    plan = Plan.objects.filter(key=(session.metadata or {}).get("tally_plan", "")).first()
    if organization is None or plan is None:
        return None
    checkout, _ = PlanCheckout.objects.get_or_create(
        stripe_session_id=session.id, defaults={"organization": organization, "plan": plan}
    )
    final = status != CheckoutOutcome.PROCESSING
    moved = PlanCheckout.objects.filter(pk=checkout.pk, status__in=_SETTLE_FROM[status]).update(
        status=status,
        failure_message=failure_message[:500],
        settled_at=timezone.now() if final else None,
    )
    if moved and status in (CheckoutOutcome.ABANDONED, CheckoutOutcome.FAILED):
        audit_record(
            organization=organization,
            action=f"billing.checkout_{status}",
            actor=checkout.actor,
            target=plan.key,
            data={"session": session.id, "reason": failure_message},
        )
    checkout.refresh_from_db()
    return checkout


def _payment_outcome(session, result: str, failure_message: str = "") -> PaymentCheckoutOutcome:
    intent = session.payment_intent
    charge = getattr(intent, "latest_charge", None) if intent and not isinstance(intent, str) else None
    return PaymentCheckoutOutcome(
        session_id=session.id,
        metadata=dict(session.metadata or {}),
        result=result,
        payment_intent_id=(intent if isinstance(intent, str) else intent.id) if intent else "",
        failure_message=failure_message,
        # Refunded before this event came? (the charge rides along when billing expanded it)
        amount_refunded=(charge.amount_refunded or 0)
        if charge is not None and not isinstance(charge, str)
        else 0,
    )


def checkout_complete(*, session_id: str) -> OrgSubscription | None:
    """After `checkout.session.completed` or `.async_payment_succeeded`: sync the subscription
    and, once it is paid, grant one-time add-ons; or tell the app that sold a payment-mode
    checkout (a credit package) how it stands, for it to grant once per session.

    A delayed payment method (a bank debit) completes the session with `payment_status`
    "unpaid": nothing is granted until `checkout.session.async_payment_succeeded`, which lands
    here again with the session paid.
    """
    client = stripe_client()
    # The payment's charge rides along for the apps that sold something with it (credits: was it
    # refunded before this event came?), at no extra round trip.
    session = client.v1.checkout.sessions.retrieve(session_id, {"expand": ["payment_intent.latest_charge"]})
    if session.status != "complete":
        return None
    paid = session.payment_status in ("paid", "no_payment_required")
    if session.mode == "payment":
        result = CheckoutResult.PAID if session.payment_status == "paid" else CheckoutResult.PROCESSING
        payment_checkout_settled(outcome=_payment_outcome(session, result))
        return None
    organization = _organization_of(session.metadata, session.customer)
    if organization is None:
        return None
    result = None
    if session.subscription:
        result = subscription_sync(subscription_id=session.subscription)
    plan_checkout_settle(
        session=session, status=CheckoutOutcome.COMPLETED if paid else CheckoutOutcome.PROCESSING
    )
    if result is not None and session.subscription and result.stripe_subscription_id != session.subscription:
        return result  # a duplicate, canceled and refunded: its add-ons were refunded too
    if not paid:
        return result
    line_items = client.v1.checkout.sessions.line_items.list(session_id, {"limit": 100})
    for line in line_items.auto_paging_iter():
        addon = Addon.objects.filter(stripe_price_id=line.price.id).first()
        if addon is not None and addon.kind == Addon.Kind.ONE_TIME:
            _grant_addon(organization, addon, line.quantity or 1, f"checkout:{session_id}")
    return result


def checkout_expired(*, session_id: str) -> None:
    """After `checkout.session.expired`: the checkout was abandoned; its record says so (for a
    plan here, for a payment checkout in the app that sold it). Nothing was charged."""
    session = stripe_client().v1.checkout.sessions.retrieve(session_id)
    if session.status != "expired":
        return
    if session.mode == "payment":
        payment_checkout_settled(outcome=_payment_outcome(session, CheckoutResult.ABANDONED))
    elif session.mode == "subscription":
        plan_checkout_settle(session=session, status=CheckoutOutcome.ABANDONED)


def _failure_of(intent) -> str:
    error = intent.get("last_payment_error") if intent is not None else None
    return (error or {}).get("message") or "The bank refused the payment."


def checkout_payment_failed(*, session_id: str) -> None:
    """After `checkout.session.async_payment_failed`: the delayed payment was refused. The
    session and its payment are re-read from Stripe; the checkout is marked failed, with the
    bank's reason, only if the payment really did not go through."""
    client = stripe_client()
    session = client.v1.checkout.sessions.retrieve(session_id, {"expand": ["payment_intent"]})
    if session.status != "complete" or session.payment_status == "paid":
        return
    if session.mode == "payment":
        intent = session.payment_intent
        if intent is None or isinstance(intent, str) or intent.status in ("succeeded", "processing"):
            return
        payment_checkout_settled(
            outcome=_payment_outcome(session, CheckoutResult.FAILED, _failure_of(intent))
        )
        return
    if session.mode != "subscription" or not session.invoice:
        return
    invoice = client.v1.invoices.retrieve(
        session.invoice, {"expand": ["payments.data.payment.payment_intent"]}
    )
    if invoice.status == "paid":
        return
    intents = [
        p["payment"]["payment_intent"]
        for p in (invoice.get("payments") or {}).get("data", [])
        if p.get("payment") and not isinstance(p["payment"].get("payment_intent"), str | None)
    ]
    if any(i.status in ("succeeded", "processing") for i in intents):
        return
    if session.subscription:
        subscription_sync(subscription_id=session.subscription)
    plan_checkout_settle(
        session=session,
        status=CheckoutOutcome.FAILED,
        failure_message=_failure_of(intents[-1] if intents else None),
    )


def _grant_addon(organization, addon: Addon, quantity: int, reference: str) -> None:
    reference = f"{reference}:{addon.key}"
    for ent in addon.entitlements.select_related("feature"):
        if EntitlementGrant.objects.filter(reference=reference, feature=ent.feature).exists():
            continue  # granted by an earlier delivery of the same event
        grant = EntitlementGrant.objects.create(
            feature=ent.feature,
            source=EntitlementGrant.Source.ADDON,
            amount=ent.amount * quantity,
            unlimited=ent.unlimited,
            reason=f"{quantity} × {addon.name}",
            reference=reference,
        )
        grant.organizations.add(organization)
        audit_record(
            organization=organization,
            action="billing.addon_granted",
            target=addon.key,
            data={"quantity": quantity, "reference": reference},
        )
    _invalidate_on_commit(organization)


def _organization_of(metadata, customer_id: str | None) -> Organization | None:
    org_id = (metadata or {}).get("tally_org_id")
    if org_id:
        organization = Organization.objects.filter(pk=org_id).first()
        if organization:
            return organization
    return selectors.organization_for_customer(customer_id) if customer_id else None


# --- Sync from Stripe --------------------------------------------------------------------------


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
        allowances.subscription_allowance_end(
            organization=organization, subscription_id=remote.id, reason=remote.status
        )
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
        before = _state(local) if local else None
        local = local or OrgSubscription(organization=organization, plan=plan)
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
        if local.pk and _state(local) == before:
            return local  # a repeated or older event: Stripe's state is already ours
        local.updated_at = timezone.now()
        local.save()
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


# --- One trial, one live subscription ---------------------------------------------------------


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


def _charge_of(invoice) -> str:
    """The charge that paid an invoice retrieved with `payments.data.payment.payment_intent`."""
    charge_id = ""
    for payment in (invoice.get("payments") or {}).get("data", []):
        intent = (payment.get("payment") or {}).get("payment_intent")
        if intent and not isinstance(intent, str):
            charge_id = intent.get("latest_charge") or charge_id
    return charge_id


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
    refunded = 0
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
        if charge.amount_refunded < charge.amount:
            client.v1.refunds.create(
                {"charge": charge_id, "reason": "duplicate"},
                {"idempotency_key": f"tally-refund-duplicate-{invoice.id}"},
            )
        refunded += invoice.amount_paid
        charge_refunded(charge_id=charge_id)
    with transaction.atomic():
        won = SubscriptionDuplicate.objects.filter(pk=duplicate.pk, resolved_at=None).update(
            resolved_at=timezone.now(), amount_refunded=refunded
        )
        if won:
            audit_record(
                organization=organization,
                action="billing.duplicate_subscription_canceled",
                target=remote.id,
                data={"kept": kept_id, "refunded": refunded, "currency": duplicate.currency},
            )
            from billing.tasks import send_duplicate_subscription_refunded

            send_duplicate_subscription_refunded.delay_on_commit(duplicate.pk)
    duplicate.refresh_from_db()
    return duplicate


def invoice_record(*, invoice_id: str) -> Payment | None:
    """Record a paid or failed invoice in the payment history, then resync its subscription
    (a paid renewal starts a new period; a failed payment starts the grace period)."""
    client = stripe_client()
    invoice = client.v1.invoices.retrieve(invoice_id, {"expand": ["payments.data.payment.payment_intent"]})
    organization = _organization_of(None, invoice.customer)
    if organization is None:
        return None
    charge_id = _charge_of(invoice)
    subscription_id = ((invoice.get("parent") or {}).get("subscription_details") or {}).get("subscription")
    lines = invoice.lines.data
    status = Payment.Status.PAID if invoice.status == "paid" else Payment.Status.FAILED
    paid_at = _ts((invoice.get("status_transitions") or {}).get("paid_at"))
    values = {
        "organization": organization,
        "stripe_charge_id": charge_id or "",
        "stripe_subscription_id": subscription_id or "",
        "number": invoice.number or "",
        "description": lines[0].description if lines else "",
        "billing_reason": invoice.billing_reason or "",
        "amount_due": invoice.amount_due,
        "amount_paid": invoice.amount_paid,
        "amount_discount": sum(d.amount for d in invoice.get("total_discount_amounts") or []),
        "amount_tax": sum(t.amount for t in invoice.get("total_taxes") or []),
        "currency": invoice.currency,
        "period_start": _ts(lines[0].period.start) if lines else None,
        "period_end": _ts(lines[0].period.end) if lines else None,
        "hosted_invoice_url": invoice.hosted_invoice_url or "",
        "created_at": _ts(invoice.created),
        "paid_at": paid_at,
    }
    first_status, refunded = status, 0
    if (
        charge_id
        and status == Payment.Status.PAID
        and not Payment.objects.filter(stripe_invoice_id=invoice.id).exists()
    ):
        # Events come in any order: the charge may have been refunded (a duplicate subscription,
        # the dashboard) before this invoice is first heard of.
        refunded = min(client.v1.charges.retrieve(charge_id).amount_refunded, invoice.amount_paid)
        if refunded:
            first_status = (
                Payment.Status.REFUNDED
                if refunded >= invoice.amount_paid
                else Payment.Status.PARTIALLY_REFUNDED
            )
    with transaction.atomic():
        payment = Payment.objects.select_for_update().filter(stripe_invoice_id=invoice.id).first()
        created = False
        if payment is None:
            try:
                with transaction.atomic():
                    payment = Payment.objects.create(
                        stripe_invoice_id=invoice.id, status=first_status, amount_refunded=refunded, **values
                    )
                    created = True
            except IntegrityError:
                payment = Payment.objects.select_for_update().get(stripe_invoice_id=invoice.id)
        if not created:
            if payment.status in (Payment.Status.REFUNDED, Payment.Status.PARTIALLY_REFUNDED):
                status = payment.status  # a refund recorded earlier stays recorded
            wanted = {**values, "status": status}
            changed = [name for name, value in wanted.items() if getattr(payment, name) != value]
            for name in changed:
                setattr(payment, name, wanted[name])
            if changed:  # a replayed event finds nothing to write
                payment.save(update_fields=changed)
        if (
            status == Payment.Status.PAID
            and PaymentDispute.objects.filter(organization=organization).exists()
        ):
            dispute_restriction_refresh(organization=organization)  # a later payment lifts a lost one
    local = (
        OrgSubscription.objects.filter(stripe_subscription_id=subscription_id).first()
        if subscription_id
        else None
    )
    # A paid invoice for a period Tally already has as active changes nothing: skip the call.
    current = (
        local is not None
        and status == Payment.Status.PAID
        and local.status == SubscriptionStatus.ACTIVE
        and local.grace_until is None
        and values["period_start"] is not None
        and local.current_period_start >= values["period_start"]
    )
    if subscription_id and not current:
        local = subscription_sync(subscription_id=subscription_id) or local
    already_marked = local is not None and local.first_paid_at is not None
    if status == Payment.Status.PAID and invoice.amount_paid > 0 and not already_marked:
        # The money-back window counts from the first payment, whichever event came first; a
        # duplicate subscription's payment (refunded) is not the tracked one's.
        tracked = OrgSubscription.objects.filter(organization=organization, first_paid_at__isnull=True)
        if subscription_id:
            tracked = tracked.filter(stripe_subscription_id=subscription_id)
        tracked.update(first_paid_at=paid_at or timezone.now())
    if status == Payment.Status.FAILED:
        from billing.tasks import send_payment_failed

        send_payment_failed.delay_on_commit(payment.pk)
    return payment


def charge_refunded(*, charge_id: str) -> Payment | None:
    """Record a refund (from Tally's money-back action or from the Stripe dashboard).

    A refunded payment for credits (a package or an auto-recharge) has credits take back what
    remains of them: credits registers for the re-read charge and finds its purchase by the
    charge's PaymentIntent.
    """
    charge = stripe_client().v1.charges.retrieve(charge_id)
    hooks.stripe_event_notify("charge.refunded", charge)
    with transaction.atomic():
        payment = Payment.objects.select_for_update().filter(stripe_charge_id=charge_id).first()
        if payment is None:
            return None
        payment.amount_refunded = min(charge.amount_refunded, payment.amount_paid)
        payment.status = (
            Payment.Status.REFUNDED
            if payment.amount_refunded >= payment.amount_paid
            else Payment.Status.PARTIALLY_REFUNDED
        )
        payment.save(update_fields=["amount_refunded", "status"])
        audit_record(
            organization=payment.organization,
            action="billing.refund_recorded",
            target=payment.number or payment.stripe_invoice_id,
            data={"amount_refunded": payment.amount_refunded},
        )
    return payment


def charge_disputed(*, dispute_id: str) -> PaymentDispute | None:
    """Record a dispute of one of the organization's payments (`charge.dispute.created` and
    `.closed`), re-read from Stripe so that any order of events ends the same.

    The apps above billing apply it to what the payment bought (credits holds back, gives back or
    takes back a purchase's credits). A disputed subscription payment restricts access like an
    unpaid invoice: full access for the grace period, then read-only until the dispute is won or
    a later invoice is paid. Staff and the owner are emailed once per state.
    """
    client = stripe_client()
    dispute = client.v1.disputes.retrieve(dispute_id, {"expand": ["charge"]})
    charge = dispute.charge
    organization = _organization_of(None, charge.customer)
    if organization is None:
        hooks.stripe_event_notify("charge.dispute", dispute)
        return None
    payment = Payment.objects.filter(stripe_charge_id=charge.id).first()
    intent = (
        charge.payment_intent
        if isinstance(charge.payment_intent, str)
        else getattr(charge.payment_intent, "id", "")
    )
    if payment is None and intent:
        # The dispute can come before `invoice.paid`: find the invoice through its payments.
        found = client.v1.invoice_payments.list(
            {"payment": {"type": "payment_intent", "payment_intent": intent}}
        )
        for invoice_payment in found.data:
            invoice_record(invoice_id=invoice_payment.invoice)
        payment = Payment.objects.filter(stripe_charge_id=charge.id).first()
    state = DisputeState.of(dispute.status)
    with transaction.atomic():
        record, _ = PaymentDispute.objects.get_or_create(
            stripe_dispute_id=dispute.id,
            defaults={
                "organization": organization,
                "payment": payment,
                "stripe_charge_id": charge.id,
                "amount": dispute.amount,
                "currency": dispute.currency,
                "reason": dispute.reason or "",
                "opened_at": _ts(dispute.created) or timezone.now(),
            },
        )
        record = PaymentDispute.objects.select_for_update().get(pk=record.pk)
        changed = []
        if record.payment_id is None and payment is not None:
            record.payment, changed = payment, ["payment"]
        if record.status == DisputeState.OPEN and state != DisputeState.OPEN:
            record.status, record.closed_at = state, timezone.now()
            changed += ["status", "closed_at"]
        if changed:
            record.save(update_fields=changed)
            audit_record(
                organization=organization,
                action=f"billing.dispute_{record.status}",
                target=dispute.id,
                data={"amount": record.amount, "charge": charge.id, "reason": record.reason},
            )
        dispute_restriction_refresh(organization=organization)
        if record.notified_status != record.status:
            from billing.tasks import send_dispute_notice

            send_dispute_notice.delay_on_commit(record.pk)
    # After the record, so that what the apps above look up (the disputed invoice's period, for
    # a plan's allowance) is there whichever came first, the dispute or `invoice.paid`.
    hooks.stripe_event_notify("charge.dispute", dispute)
    return record


def dispute_restriction_refresh(*, organization: Organization) -> None:
    """Set when the organization's access turns read-only for its disputed subscription payments:
    the grace period after the earliest one still open, or lost and not followed by a later paid
    invoice; none when there is none."""
    latest_paid = (
        Payment.objects.filter(organization=organization, status=Payment.Status.PAID)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    due = []
    for record in PaymentDispute.objects.filter(
        organization=organization, payment__isnull=False
    ).select_related("payment"):
        if record.status == DisputeState.WON:
            continue
        if record.status == DisputeState.LOST and latest_paid and latest_paid > record.payment.created_at:
            continue
        due.append(record.opened_at + timedelta(days=settings.BILLING_GRACE_DAYS))
    until = min(due) if due else None
    if (
        OrgSubscription.objects.filter(organization=organization)
        .exclude(dispute_grace_until=until)
        .update(dispute_grace_until=until)
    ):
        _invalidate_on_commit(organization)


# --- Changes -----------------------------------------------------------------------------------


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


def _item_changes(remote, new_plan: Plan, seats: int) -> list[dict]:
    """Items for `subscriptions.update`: every current item removed or swapped, every line item
    of the new plan present once."""
    current = list(remote["items"].data)
    changes = []
    wanted = list(_purchasable(new_plan))
    for item in current:
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


def subscription_change_preview(*, organization: Organization, plan: Plan) -> Preview:
    """What changing to `plan` costs: now for an upgrade (prorated), at renewal for a downgrade
    (and for keeping the current plan while a downgrade is pending)."""
    subscription = _subscription_for_change(organization)
    withdraw = _same_plan(subscription, plan)
    client = stripe_client()
    remote = client.v1.subscriptions.retrieve(subscription.stripe_subscription_id)
    seats = billable_seats(organization)
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


def subscription_change(*, organization: Organization, plan: Plan, actor: User) -> OrgSubscription:
    """Upgrades (and interval switches) apply now with proration, invoiced at once;
    downgrades apply at the end of the period already paid for. Choosing the current plan
    while a downgrade is pending withdraws the downgrade."""
    subscription = _subscription_for_change(organization)
    if _same_plan(subscription, plan):
        return _pending_change_withdraw(subscription, actor)
    client = stripe_client()
    remote = client.v1.subscriptions.retrieve(subscription.stripe_subscription_id)
    seats = billable_seats(organization)
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
    client.v1.subscriptions.update(
        remote.id,
        params,
        {"idempotency_key": f"tally-change-{remote.id}-{plan.key}-{version}-{digest}"},
    )
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
    client = stripe_client()
    remote = client.v1.subscriptions.retrieve(subscription.stripe_subscription_id)
    pending = subscription.pending_plan
    params = {
        "items": _item_changes(remote, subscription.plan, billable_seats(subscription.organization)),
        "proration_behavior": "none",
        "metadata": {"tally_plan": subscription.plan.key},
    }
    version = int(subscription.updated_at.timestamp())
    client.v1.subscriptions.update(
        remote.id, params, {"idempotency_key": f"tally-withdraw-{remote.id}-{pending.key}-{version}"}
    )
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
    stripe_client().v1.subscriptions.update(
        subscription.stripe_subscription_id, {"cancel_at_period_end": value}
    )
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
    payments = [first] if first is not None and first.status == Payment.Status.PAID else []
    client = stripe_client()
    client.v1.subscriptions.cancel(subscription.stripe_subscription_id)
    for payment in payments:
        client.v1.refunds.create(
            {"charge": payment.stripe_charge_id, "reason": "requested_by_customer"},
            {"idempotency_key": f"tally-refund-{payment.stripe_invoice_id}"},
        )
        charge_refunded(charge_id=payment.stripe_charge_id)
    audit_record(
        organization=organization,
        action="billing.refunded_and_canceled",
        actor=actor,
        target=subscription.plan.key,
        data={"refunded": sum(p.amount_paid for p in payments)},
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


# --- Reconciliation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Drift:
    organization: Organization
    field: str
    local: object
    remote: object


def subscription_reconcile(*, fix: bool = False) -> list[Drift]:
    """Compare every organization's subscription with Stripe; with `fix`, resync the drifted.

    Catches what a lost webhook would leave behind: a plan, status, seat count or cancellation
    that Stripe has and Tally does not; and a seat quantity in Stripe that differs from the
    billable members (a lost seat sync), which `fix` sets right in Stripe."""
    from billing.seats import seat_sync

    client = stripe_client()
    drifts: list[Drift] = []
    for local in OrgSubscription.objects.exclude(stripe_subscription_id=None).select_related(
        "plan", "organization"
    ):
        remote = client.v1.subscriptions.retrieve(local.stripe_subscription_id)
        plan, seats = _plan_of(remote)
        expected_plan = local.plan if local.pending_plan_id == (plan.pk if plan else None) else plan
        found = []
        if expected_plan and expected_plan.pk != local.plan_id:
            found.append(Drift(local.organization, "plan", local.plan.key, expected_plan.key))
        if remote.status != local.status:
            found.append(Drift(local.organization, "status", local.status, remote.status))
        if seats != local.seats:
            found.append(Drift(local.organization, "seats", local.seats, seats))
        if bool(remote.cancel_at_period_end) != local.cancel_at_period_end:
            found.append(
                Drift(
                    local.organization,
                    "cancel_at_period_end",
                    local.cancel_at_period_end,
                    bool(remote.cancel_at_period_end),
                )
            )
        drifts += found
        if fix and found:
            subscription_sync(subscription_id=local.stripe_subscription_id)
        seat_plan = expected_plan or local.plan
        if (
            seat_plan.seat_item() is not None
            and remote.status in ("active", "trialing", "past_due")
            and local.organization.deleted_at is None
        ):
            billable = billable_seats(local.organization, plan=seat_plan)
            if billable != seats:
                drifts.append(Drift(local.organization, "billable seats", billable, seats))
                if fix:
                    seat_sync(organization_id=local.organization_id)
    drifts += _live_subscriptions_reconcile(client, fix=fix)
    return drifts


# Subscriptions that can still charge or grant: everything but the ended for good.
LIVE_STATUSES = ("active", "trialing", "past_due", "unpaid", "incomplete", "paused")


def live_subscriptions(customer_id: str, *, client=None) -> list:
    """The customer's subscriptions in Stripe that can still charge, read from Stripe itself:
    a webhook that has not arrived yet must not hide one."""
    client = client or stripe_client()
    listed = client.v1.subscriptions.list({"customer": customer_id, "status": "all", "limit": 100})
    return [sub for sub in listed.auto_paging_iter() if sub.status in LIVE_STATUSES]


def _live_subscriptions_reconcile(client, *, fix: bool) -> list[Drift]:
    """At most one live Stripe subscription per organization. With `fix`, the ones Tally does
    not track are ended as duplicates (canceled, refunded, the owners told); when Tally tracks
    none of them, the oldest is kept and recorded."""
    drifts = []
    tracked = dict(
        OrgSubscription.objects.exclude(stripe_subscription_id=None).values_list(
            "organization_id", "stripe_subscription_id"
        )
    )
    for customer_id, organization in selectors.customers_of_organizations():
        live = live_subscriptions(customer_id, client=client)
        if len(live) <= 1:
            continue
        ours = tracked.get(organization.pk)
        drifts.append(
            Drift(organization, "live subscriptions", int(any(sub.id == ours for sub in live)), len(live))
        )
        if not fix:
            continue
        kept = next((sub for sub in live if sub.id == ours), None)
        if kept is None:
            kept = min(live, key=lambda sub: (sub.created, sub.id))
            subscription_sync(subscription_id=kept.id)
        for sub in live:
            if sub.id != kept.id:
                subscription_duplicate_end(organization=organization, remote=sub, kept_id=kept.id)
    return drifts
