"""Apply a stored Stripe event. Safe to run twice: every handler re-reads the object from Stripe
and upserts by Stripe's ids, and the credit grants that follow (packages, a plan's allowance)
carry idempotency keys the database keeps unique."""

from djstripe.models import Event

from billing.subscriptions import periods
from billing.webhooks import registry


def handle(event_id: str, kind: str | None = None, object_id: str | None = None) -> None:
    """Apply an event; the receiver passes its type and object id, a replay only its id."""
    if kind is None or object_id is None:
        event = Event.objects.filter(id=event_id).first()
        if event is None:
            return
        kind, object_id = event.type, ((event.data or {}).get("object") or {}).get("id")
    synced = registry.dispatch(kind, object_id)
    # Whatever started a period (the first payment, a renewal, a trial), its allowance follows.
    periods.period_started(subscription=synced)
