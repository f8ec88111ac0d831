"""Events: a snapshot of an object taken when something happened to it, queued for webhooks."""

from typing import Any

from stripe_sim import API_VERSION_STRING, strict
from stripe_sim.render import render
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
    for endpoint in reversed(endpoints):  # oldest endpoint first
        store.deliveries.append(
            {
                "id": store.new_id("whdel"),
                "event": event["id"],
                "type": event_type,
                "endpoint": endpoint["id"],
                "url": endpoint["url"],
                "status": "pending",
                "attempts": [],
                "next_attempt_at": 0.0,
            }
        )
    store.outbox.append(event["id"])
    return event


def changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """``previous_attributes``: the old values of the top-level fields that changed."""
    return {
        key: value for key, value in before.items() if not key.startswith("_") and after.get(key) != value
    }
