"""Dispatch a stored Stripe event to the service that applies it. Safe to run twice: every
service re-reads the object from Stripe and upserts by Stripe's ids, and the credit grants that
follow (packages, a plan's allowance) carry idempotency keys the database keeps unique."""

from django.conf import settings
from django.db import transaction
from djstripe.models import Event

from billing import allowances, billing_details, discounts, seats, subscriptions
from billing.models import OrgSubscription, SubscriptionDiscount


def handle(event_id: str, kind: str | None = None, object_id: str | None = None) -> None:
    """Apply an event; the receiver passes its type and object id, a replay only its id."""
    if kind is None or object_id is None:
        event = Event.objects.filter(id=event_id).first()
        if event is None:
            return
        kind, object_id = event.type, ((event.data or {}).get("object") or {}).get("id")
    obj = {"id": object_id}
    synced = None
    if kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
        synced = subscriptions.checkout_complete(session_id=obj["id"])
        if synced is not None:
            # The quantity was counted when checkout started: members who joined while the
            # page was open are billed from now on.
            organization_id = synced.organization_id
            transaction.on_commit(lambda: seats.seat_sync_schedule(organization_id=organization_id))
    elif kind == "checkout.session.expired":
        subscriptions.checkout_expired(session_id=obj["id"])
    elif kind == "checkout.session.async_payment_failed":
        subscriptions.checkout_payment_failed(session_id=obj["id"])
    elif kind.startswith("customer.subscription."):
        synced = subscriptions.subscription_sync(subscription_id=obj["id"])
    elif kind in ("invoice.paid", "invoice.payment_failed"):
        payment = subscriptions.invoice_record(invoice_id=obj["id"])
        if payment is not None and kind == "invoice.paid":
            synced = OrgSubscription.objects.filter(organization=payment.organization).first()
    elif kind == "charge.refunded":
        subscriptions.charge_refunded(charge_id=obj["id"])
    elif kind in ("charge.dispute.created", "charge.dispute.closed"):
        subscriptions.charge_disputed(dispute_id=obj["id"])
    elif kind == "customer.updated" or kind.startswith("customer.tax_id."):
        # Only the address, name and tax IDs matter here, and only when Stripe Tax is on.
        customer_id = obj["id"] if kind == "customer.updated" else _payload(event_id).get("customer")
        if settings.USE_STRIPE_TAX and customer_id and _details_touched(event_id, kind):
            billing_details.billing_profile_sync(customer_id=customer_id)
    elif kind.startswith("customer.discount."):
        subscription_id = _payload(event_id).get("subscription")
        if subscription_id:
            discounts.subscription_discounts_sync(subscription_id=subscription_id)
    if synced is not None and synced.stripe_subscription_id and _discounts_touched(event_id, synced):
        # A discount made with the subscription (at checkout) is announced before Tally knows
        # the subscription: it is mirrored once the subscription is.
        discounts.subscription_discounts_sync(subscription_id=synced.stripe_subscription_id)
    # Whatever started a period (the first payment, a renewal, a trial), its allowance follows.
    allowances.subscription_allowance_grant(subscription=synced)


def _payload(event_id: str) -> dict:
    event = Event.objects.filter(id=event_id).first()
    return ((event.data or {}).get("object") or {}) if event is not None else {}


def _details_touched(event_id: str, kind: str) -> bool:
    if kind != "customer.updated":
        return True
    event = Event.objects.filter(id=event_id).first()
    previous = ((event.data or {}).get("previous_attributes") or {}) if event is not None else {}
    return bool({"address", "name"} & set(previous)) or event is None


def _discounts_touched(event_id: str, synced: OrgSubscription) -> bool:
    """Whether the event may have changed the subscription's discounts (only a hint: what they
    are is read from Stripe)."""
    event = Event.objects.filter(id=event_id).first()
    data = (event.data or {}) if event is not None else {}
    if (data.get("object") or {}).get("discounts") or "discounts" in (data.get("previous_attributes") or {}):
        return True
    return SubscriptionDiscount.objects.filter(
        stripe_subscription_id=synced.stripe_subscription_id, ended_at=None
    ).exists()
