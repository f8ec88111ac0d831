"""Webhook deliveries going wrong, per event type, as Stripe's sometimes do.

``POST /_sim/config`` with ``{"webhook_faults": [{"type": "invoice.paid", "action": "drop"}]}``
arms them; each fault names an event type (exact, a prefix ending in ``*``, or ``*``), an
action and optionally ``count`` (how many deliveries it touches; -1, the default, until disarmed):

- ``drop``: the delivery is never attempted (status ``dropped``), as when an endpoint was
  unreachable through every retry; only reconciliation against the API can repair it.
- ``delay``: first attempted ``seconds`` later (default 3600); ``POST /_sim/deliveries/release``
  makes every delayed or held delivery due now, for "the webhook arrived hours late".
- ``duplicate``: delivered twice.
- ``reorder``: held back until the next delivery to the same endpoint is queued, then sent
  after it, so a later event arrives first.
"""

import time
from typing import Any

ACTIONS = ("drop", "delay", "duplicate", "reorder")


class DeliveryFaultError(ValueError):
    pass


def validate(faults: Any) -> list[dict[str, Any]]:
    if faults is None:
        return []
    if not isinstance(faults, list):
        raise DeliveryFaultError("webhook_faults: a list")
    out = []
    for fault in faults:
        if not isinstance(fault, dict) or not isinstance(fault.get("type"), str):
            raise DeliveryFaultError("webhook_faults: each names an event `type`")
        if fault.get("action") not in ACTIONS:
            raise DeliveryFaultError(f"webhook_faults: action is one of {', '.join(ACTIONS)}")
        count = fault.get("count", -1)
        seconds = fault.get("seconds", 3600)
        if not isinstance(count, int) or isinstance(count, bool) or count == 0 or count < -1:
            raise DeliveryFaultError("webhook_faults: count is a positive number, or -1")
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
            raise DeliveryFaultError("webhook_faults: seconds is a non-negative number")
        out.append({"type": fault["type"], "action": fault["action"], "count": count, "seconds": seconds})
    return out


def _matches(pattern: str, event_type: str) -> bool:
    if pattern.endswith("*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


def _take(faults: list[dict[str, Any]], event_type: str) -> dict[str, Any] | None:
    for fault in faults:
        if fault["count"] != 0 and _matches(fault["type"], event_type):
            if fault["count"] > 0:
                fault["count"] -= 1
            return fault
    return None


def queue(store: Any, delivery: dict[str, Any]) -> None:
    """Queue a new delivery, as the armed faults say. Call under the store's lock."""
    fault = _take(store.config.webhook_faults or [], delivery["type"])
    held = [d for d in store.deliveries if d["status"] == "held" and d["endpoint"] == delivery["endpoint"]]
    action = fault["action"] if fault else None
    if action == "drop":
        delivery["status"] = "dropped"
    elif action == "delay":
        delivery["next_attempt_at"] = time.time() + fault["seconds"]
    elif action == "reorder":
        delivery["status"] = "held"
    store.deliveries.append(delivery)
    if action == "duplicate":
        store.deliveries.append({**delivery, "id": store.new_id("whdel"), "attempts": []})
    # What was held goes out after this one: the later event arrives first.
    for earlier in held:
        store.deliveries.remove(earlier)
        earlier["status"] = "pending"
        store.deliveries.append(earlier)


def release(store: Any) -> list[str]:
    """Make every delayed or held delivery due now (oldest first); returns their ids."""
    now = time.time()
    released = []
    for delivery in store.deliveries:
        if delivery["status"] == "held" or (
            delivery["status"] == "pending" and not delivery["attempts"] and delivery["next_attempt_at"] > now
        ):
            delivery["status"] = "pending"
            delivery["next_attempt_at"] = 0.0
            released.append(delivery["id"])
    return released
