"""The one registry of Stripe event handlers.

A service registers the handler of its events beside itself, `@on("invoice.paid")`; the dj-stripe
receiver listens to exactly the kinds registered here (`handled()`), so adding a handler is one
registration and its test. A handler gets the event's kind and object id, re-reads the object from
Stripe and applies it; it returns the subscription whose billing period the event may have
started (or None), so that the period's allowance follows (`billing.webhooks.dispatch`).

The apps above billing follow the objects billing re-read (a Charge, a Dispute) with
`stripe_event_register`, from their AppConfig.ready(): billing imports nothing of them.
Events come duplicated and out of order: every handler must be safe to run again, in any order.
"""

from collections.abc import Callable, Iterable
from typing import Any

EventHandler = Callable[..., Any]
StripeEventHandler = Callable[..., None]
_on: dict[str, list[EventHandler]] = {}
_handlers: dict[str, list[StripeEventHandler]] = {}


def on(*kinds: str) -> Callable[[EventHandler], EventHandler]:
    """Register `handler(*, kind, object_id)` for each of `kinds` (Stripe's event types)."""

    def register(handler: EventHandler) -> EventHandler:
        for kind in kinds:
            registered = _on.setdefault(kind, [])
            if handler not in registered:
                registered.append(handler)
        return handler

    return register


def handled() -> list[str]:
    """The event types some handler applies: what the webhook receiver listens to."""
    return sorted(_on)


def dispatch(kind: str, object_id: str):
    """Run the handlers of `kind` in registration order; the last subscription one returned."""
    synced = None
    for handler in _on.get(kind, []):
        result = handler(kind=kind, object_id=object_id)
        if result is not None:
            synced = result
    return synced


def stripe_event_register(kinds: Iterable[str], handler: StripeEventHandler) -> None:
    """Have `handler(kind=..., obj=...)` called for each of `kinds`, with the object billing
    re-read from Stripe (a Charge, a Dispute), during billing's own handling and outside any
    transaction. It must be safe to call again, in any order."""
    for kind in kinds:
        registered = _handlers.setdefault(kind, [])
        if handler not in registered:
            registered.append(handler)


def stripe_event_notify(kind: str, obj: Any) -> None:
    for handler in _handlers.get(kind, []):
        handler(kind=kind, obj=obj)
