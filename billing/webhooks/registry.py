"""The one registry of Stripe event handlers, with one entry point: `on(...)`.

A service registers the handler of its events beside itself, `@on("invoice.paid")`; the dj-stripe
receiver listens to exactly the kinds registered here (`handled()`), so adding a handler is one
registration and its test. A handler gets the event's kind and object id, re-reads the object from
Stripe and applies it; it returns the subscription whose billing period the event may have
started (or None), so that the period's allowance follows (`billing.webhooks.dispatch`).

The apps above billing follow the objects billing re-read (a Charge, a Dispute) with the same
decorator, `@on("charge.refunded", reread=True)`, from their AppConfig.ready(): billing imports
nothing of them, and such a handler gets `obj`, the object billing re-read, instead of an id.
Billing's own add-ons follow them the same way (what a refunded or disputed add-on payment
granted).
A handler that needs what the event itself says (its `previous_attributes`, the object as it
was) registers with `payload=True` and gets `payload`, a function returning the stored event's
data, read by the event's id on the first call and shared by the event's handlers.
Events come duplicated and out of order: every handler must be safe to run again, in any order.
"""

import functools
from collections.abc import Callable
from typing import Any

EventHandler = Callable[..., Any]
Payload = Callable[[], dict]  # the stored event's data, read on the first call

# What billing hands on after re-reading it: a refunded Charge, and a Dispute of any of
# `charge.dispute.*` (billing's own handling, or an action such as a money-back refund).
REREAD_KINDS = ("charge.refunded", "charge.dispute")

_on: dict[str, list[EventHandler]] = {}
_reread: dict[str, list[EventHandler]] = {}
_with_payload: set[EventHandler] = set()


def on(*kinds: str, reread: bool = False, payload: bool = False) -> Callable[[EventHandler], EventHandler]:
    """Register `handler(*, kind, object_id)` for each of `kinds` (Stripe's event types).

    With `reread=True`, register `handler(*, kind, obj)` instead, called with the object billing
    re-read from Stripe, during billing's own handling and outside any transaction; `kinds` are
    then among `REREAD_KINDS`. With `payload=True`, `handler(*, kind, object_id, payload)`.
    """
    if reread and (unknown := set(kinds) - set(REREAD_KINDS)):
        raise ValueError(f"Billing hands on no re-read object for {sorted(unknown)}; see REREAD_KINDS.")
    table = _reread if reread else _on

    def register(handler: EventHandler) -> EventHandler:
        if payload:
            _with_payload.add(handler)
        for kind in kinds:
            registered = table.setdefault(kind, [])
            if handler not in registered:
                registered.append(handler)
        return handler

    return register


def handled() -> list[str]:
    """The event types some handler applies: what the webhook receiver listens to."""
    return sorted(_on)


def _payload_of(event_id: str | None) -> Payload:
    @functools.cache
    def payload() -> dict:
        from djstripe.models import Event

        data = Event.objects.filter(id=event_id).values_list("data", flat=True).first() if event_id else None
        return data or {}

    return payload


def dispatch(kind: str, object_id: str, event_id: str | None = None):
    """Run the handlers of `kind` in registration order; the last subscription one returned."""
    synced = None
    payload = _payload_of(event_id)
    for handler in _on.get(kind, []):
        if handler in _with_payload:
            result = handler(kind=kind, object_id=object_id, payload=payload)
        else:
            result = handler(kind=kind, object_id=object_id)
        if result is not None:
            synced = result
    return synced


def stripe_event_notify(kind: str, obj: Any) -> None:
    """Hand the object billing re-read to the handlers registered with `reread=True`."""
    for handler in _reread.get(kind, []):
        handler(kind=kind, obj=obj)
