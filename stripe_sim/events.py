"""Events: a snapshot of an object taken when something happened to it, queued for webhooks."""

from typing import Any

from stripe_sim import API_VERSION_STRING, delivery_faults, strict
from stripe_sim.render import public, render
from stripe_sim.store import Store


def emit(
    store: Store,
    event_type: str,
    obj: dict[str, Any],
    previous_attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Record an event about ``obj`` (rendered now) and queue a delivery per matching endpoint."""
    data: dict[str, Any] = {"object": render(store, obj)}
    if previous_attributes:
        data["previous_attributes"] = previous_attributes
    endpoints = [
        we
        for we in store.all("webhook_endpoint")
        if we["status"] == "enabled" and ("*" in we["enabled_events"] or event_type in we["enabled_events"])
    ]
    event = {
        "id": store.new_id("event"),
        "object": "event",
        "api_version": API_VERSION_STRING,
        "created": store.now(),
        "data": data,
        "livemode": False,
        "pending_webhooks": len(endpoints),
        "request": dict(store.current_request),
        "type": event_type,
    }
    strict.check_event(event)
    store.add(event)
    if obj.get("id"):
        store.snapshots[obj["id"]] = public(obj)
    for endpoint in reversed(endpoints):  # oldest endpoint first
        delivery_faults.queue(
            store,
            {
                "id": store.new_id("whdel"),
                "event": event["id"],
                "type": event_type,
                "endpoint": endpoint["id"],
                "url": endpoint["url"],
                "status": "pending",
                "attempts": [],
                "next_attempt_at": 0.0,
            },
        )
    store.outbox.append(event["id"])
    return event


def changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """``previous_attributes``: the old values of the top-level fields that changed."""
    return {
        key: value for key, value in before.items() if not key.startswith("_") and after.get(key) != value
    }


# The ``*.updated`` event of each kind that has one (a subscription's is the customer's).
_UPDATED_NAMES = {"subscription": "customer.subscription.updated", "dispute": "charge.dispute.updated"}


def _updated_types() -> dict[str, str]:
    known = set(strict.schema().types["event"]["fields"]["type"][1:])
    kinds = {kind: _UPDATED_NAMES.get(kind, f"{kind}.updated") for kind in strict.schema().objects}
    kinds.update(_UPDATED_NAMES)
    return {kind: name for kind, name in kinds.items() if name in known}


UPDATED_TYPES = _updated_types()


def emit_updates(store: Store) -> None:
    """An ``*.updated`` event for every object changed since the last event about it, with the
    old values of what changed, as Stripe sends one for every change it stores (a customer's
    ``next_invoice_sequence``, an invoice's ``next_payment_attempt``, a subscription's
    ``latest_invoice``...). Run once a request or a clock step is done."""
    for kind, event_type in UPDATED_TYPES.items():
        for obj in list(store.objects.get(kind, {}).values()):
            if obj.get("_deleted"):
                continue
            now = public(obj)
            before = store.snapshots.get(obj["id"])
            if before is None:
                store.snapshots[obj["id"]] = now
            elif now != before:
                emit(store, event_type, obj, changed(before, now))
