"""Tally's receiver on dj-stripe's webhook endpoint.

dj-stripe has verified the signature and stored the event (once per event id) by the time it
runs, inside its transaction. The receiver only queues the work for after the commit: the
handler calls Stripe, which must never happen inside a transaction.
"""

from djstripe.event_handlers import djstripe_receiver

from billing.webhooks import registry
from billing.webhooks.tasks import process_stripe_event


def queue_stripe_event(sender, event, **kwargs) -> None:
    obj = (event.data or {}).get("object") or {}
    process_stripe_event.delay_on_commit(event.id, event.type, obj.get("id"))


def connect() -> None:
    """Listen to every event type a handler is registered for (`BillingConfig.ready()`, once
    the handlers' modules are imported)."""
    djstripe_receiver(registry.handled())(queue_stripe_event)
