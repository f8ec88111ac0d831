"""Tally's receivers on dj-stripe's webhook endpoint.

dj-stripe has verified the signature and stored the event (once per event id) by the time these
run, inside its transaction. The receivers only queue the work for after the commit: the handler
calls Stripe, which must never happen inside a transaction.
"""

from djstripe.event_handlers import djstripe_receiver

from billing.tasks import process_stripe_event

HANDLED = [
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.discount.created",
    "customer.discount.updated",
    "customer.discount.deleted",
    "customer.updated",
    "customer.tax_id.created",
    "customer.tax_id.updated",
    "customer.tax_id.deleted",
    "invoice.paid",
    "invoice.payment_failed",
    "charge.refunded",
    "charge.dispute.created",
    "charge.dispute.closed",
]


@djstripe_receiver(HANDLED)
def queue_stripe_event(sender, event, **kwargs) -> None:
    obj = (event.data or {}).get("object") or {}
    process_stripe_event.delay_on_commit(event.id, event.type, obj.get("id"))
