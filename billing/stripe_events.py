"""Dispatch a stored Stripe event to the service that applies it. Safe to run twice: every
service re-reads the object from Stripe and upserts by Stripe's ids."""

from djstripe.models import Event

from billing import subscriptions


def handle(event_id: str) -> None:
    event = Event.objects.filter(id=event_id).first()
    if event is None:
        return
    obj = (event.data or {}).get("object") or {}
    kind = event.type
    if kind == "checkout.session.completed":
        subscriptions.checkout_complete(session_id=obj["id"])
    elif kind.startswith("customer.subscription."):
        subscriptions.subscription_sync(subscription_id=obj["id"])
    elif kind in ("invoice.paid", "invoice.payment_failed"):
        subscriptions.invoice_record(invoice_id=obj["id"])
    elif kind == "charge.refunded":
        subscriptions.charge_refunded(charge_id=obj["id"])
