"""Subscriptions through Stripe: customers, checkout, webhook-driven sync, changes, refunds.

Stripe says what was paid; `OrgSubscription` says what the organization may do. Every function
here that calls Stripe does so outside any database transaction, then records the result in a
short one. Webhook handlers re-read the object from Stripe instead of trusting the payload, so
events that arrive twice or out of order end in the same state.
"""

import time

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from billing.gateway.client import stripe_client
from billing.gateway.customers import customer_ensure
from billing.gateway.payments import CheckoutResult, PaymentCheckoutOutcome, payment_checkout_settled
from billing.models import (
    Addon,
    AddonPurchase,
    CheckoutOutcome,
    OrgSubscription,
    Payment,
    Plan,
    PlanCheckout,
    PlanLineItem,
    PromotionCode,
    TrialRecord,
)
from billing.notifications import async_payment_failed_queue
from billing.seats.counts import billable_seats
from billing.seats.schedule import seat_sync_schedule
from billing.subscriptions.addon_grants import addon_purchase_grant
from billing.subscriptions.cards import card_setup_settle
from billing.subscriptions.remote import _organization_of
from billing.subscriptions.sync import live_subscriptions, subscription_sync
from billing.webhooks.registry import on
from common.errors import ServiceError
from teams.models import Organization, User
from teams.services import audit_record


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
    unsold = [addon.name for addon in addons if addon.unit_amount_in(currency) is None]
    if unsold:
        raise ServiceError(
            "currency_unavailable", f"{unsold[0]} is not sold in {currency.upper()}.", field="addons"
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
    if session.mode == "setup":
        card_setup_settle(session_id=session.id)  # a card saved for later: it buys nothing
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
            _grant_addon(organization, addon, line.quantity or 1, session_id, session.currency)
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
        _async_failure_tell(session, _failure_of(intent))
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
    reason = _failure_of(intents[-1] if intents else None)
    plan_checkout_settle(session=session, status=CheckoutOutcome.FAILED, failure_message=reason)
    _async_failure_tell(session, reason)


def _async_failure_tell(session, reason: str) -> None:
    """Email the billing contacts once per session (the notice's key): a replayed event, or the
    failure learnt again, tells nothing more."""
    organization = _organization_of(session.metadata, session.customer)
    if organization is None:
        return
    async_payment_failed_queue(
        organization=organization,
        # A subscription's failure is its first invoice's, which `invoice.payment_failed` also
        # tells of under the same key: one email whichever event comes first.
        key=session.invoice if session.mode == "subscription" and session.invoice else session.id,
        amount=session.amount_total or 0,
        currency=session.currency or "usd",
        reason=reason,
        what="subscription" if session.mode == "subscription" else "purchase",
    )


def _grant_addon(organization, addon: Addon, quantity: int, session_id: str, currency: str | None) -> None:
    """A one-time add-on bought with the plan: one purchase per (session, add-on), granted once,
    recorded in the currency the session was paid in."""
    currency = currency or addon.currency
    try:
        with transaction.atomic():
            purchase, _ = AddonPurchase.objects.get_or_create(
                stripe_checkout_session_id=session_id,
                addon=addon,
                defaults={
                    "organization": organization,
                    "quantity": quantity,
                    "unit_amount": addon.unit_amount_in(currency) or 0,
                    "currency": currency,
                },
            )
    except IntegrityError:  # a concurrent delivery of the same event created it
        purchase = AddonPurchase.objects.get(stripe_checkout_session_id=session_id, addon=addon)
    addon_purchase_grant(purchase=purchase)


# --- Stripe events --------------------------------------------------------------------------


@on("checkout.session.completed", "checkout.session.async_payment_succeeded")
def _checkout_session_paid(*, kind: str, object_id: str) -> OrgSubscription | None:
    synced = checkout_complete(session_id=object_id)
    if synced is not None:
        # The quantity was counted when checkout started: members who joined while the page was
        # open are billed from now on.
        organization_id = synced.organization_id
        transaction.on_commit(lambda: seat_sync_schedule(organization_id=organization_id))
    return synced


@on("checkout.session.expired")
def _checkout_session_expired(*, kind: str, object_id: str) -> None:
    checkout_expired(session_id=object_id)


@on("checkout.session.async_payment_failed")
def _checkout_session_failed(*, kind: str, object_id: str) -> None:
    checkout_payment_failed(session_id=object_id)
