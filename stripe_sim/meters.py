"""Billing meters and meter events: usage that metered prices turn into invoice lines."""

from decimal import Decimal, InvalidOperation
from typing import Any

from stripe_sim.core import list_response, new_object, respond
from stripe_sim.errors import invalid, invalid_param
from stripe_sim.params import as_dict, as_int, require
from stripe_sim.render import list_object, public
from stripe_sim.routing import Ctx, route
from stripe_sim.store import Store

FORMULAS = ("sum", "count", "last")


@route("POST", "/v1/billing/meters")
def meter_create(ctx: Ctx) -> dict[str, Any]:
    store, params = ctx.store, ctx.params
    event_name = str(require(params, "event_name"))
    if any(m["event_name"] == event_name for m in store.all("billing.meter")):
        raise invalid_param("event_name", f"A meter with event_name {event_name} already exists.")
    formula = as_dict(params, "default_aggregation").get("formula")
    if formula not in FORMULAS:
        raise invalid_param(
            "default_aggregation[formula]", "Invalid formula: must be one of sum, count, last."
        )
    mapping = as_dict(params, "customer_mapping")
    value_settings = as_dict(params, "value_settings")
    meter = new_object(
        store,
        "billing.meter",
        customer_mapping={
            "event_payload_key": mapping.get("event_payload_key") or "stripe_customer_id",
            "type": "by_id",
        },
        default_aggregation={"formula": formula},
        display_name=require(params, "display_name"),
        event_name=event_name,
        event_time_window=params.get("event_time_window") or None,
        status="active",
        status_transitions={"deactivated_at": None},
        value_settings={"event_payload_key": value_settings.get("event_payload_key") or "value"},
    )
    meter["updated"] = meter["created"]
    store.add(meter)
    return respond(ctx, meter)


@route("GET", "/v1/billing/meters/<id>")
def meter_retrieve(ctx: Ctx, id: str) -> dict[str, Any]:
    return respond(ctx, ctx.store.get("billing.meter", id))


@route("POST", "/v1/billing/meters/<id>")
def meter_update(ctx: Ctx, id: str) -> dict[str, Any]:
    meter = ctx.store.get("billing.meter", id)
    if ctx.params.get("display_name"):
        meter["display_name"] = ctx.params["display_name"]
        meter["updated"] = ctx.store.now()
    return respond(ctx, meter)


@route("POST", "/v1/billing/meters/<id>/deactivate")
def meter_deactivate(ctx: Ctx, id: str) -> dict[str, Any]:
    meter = ctx.store.get("billing.meter", id)
    meter["status"] = "inactive"
    meter["status_transitions"] = {"deactivated_at": ctx.store.now()}
    return respond(ctx, meter)


@route("POST", "/v1/billing/meters/<id>/reactivate")
def meter_reactivate(ctx: Ctx, id: str) -> dict[str, Any]:
    meter = ctx.store.get("billing.meter", id)
    meter["status"] = "active"
    meter["status_transitions"] = {"deactivated_at": None}
    return respond(ctx, meter)


@route("GET", "/v1/billing/meters")
def meter_list(ctx: Ctx) -> dict[str, Any]:
    items = ctx.store.all("billing.meter")
    if ctx.params.get("status"):
        items = [m for m in items if m["status"] == ctx.params["status"]]
    return list_response(ctx, items, "/v1/billing/meters")


@route("POST", "/v1/billing/meter_events")
def meter_event_create(ctx: Ctx) -> dict[str, Any]:
    """Record usage. A repeated ``identifier`` is a no-op returning the first event, so a sender
    retrying after a timeout never double counts (Stripe dedupes identifiers the same way)."""
    store, params = ctx.store, ctx.params
    event_name = str(require(params, "event_name"))
    payload = as_dict(params, "payload")
    meter = next((m for m in store.all("billing.meter") if m["event_name"] == event_name), None)
    if meter is None:
        raise invalid_param("event_name", f"No active meter found for event_name {event_name}.")
    if meter["status"] != "active":
        raise invalid(f"The meter for event_name {event_name} is inactive.")
    customer_key = meter["customer_mapping"]["event_payload_key"]
    value_key = meter["value_settings"]["event_payload_key"]
    customer_id = payload.get(customer_key)
    if not customer_id:
        raise invalid_param(f"payload[{customer_key}]", f"Missing payload[{customer_key}].")
    customer = store.get("customer", customer_id, f"payload[{customer_key}]")
    raw_value = payload.get(value_key, "1")
    try:
        value = Decimal(str(raw_value))
    except InvalidOperation:
        raise invalid_param(f"payload[{value_key}]", "The value must be a number.") from None
    identifier = str(params.get("identifier") or store.new_id("mevt"))
    existing = store.objects.get("billing.meter_event", {}).get(identifier)
    if existing is not None:
        return _served(existing)
    now = store.now(customer.get("test_clock"))
    timestamp = as_int(params, "timestamp", now)
    event = {
        "id": identifier,
        "object": "billing.meter_event",
        "created": now,
        "event_name": event_name,
        "identifier": identifier,
        "livemode": False,
        "payload": {str(k): str(v) for k, v in payload.items()},
        "timestamp": timestamp,
        "_meter": meter["id"],
        "_customer": customer["id"],
        "_value": str(value),
    }
    store.add(event)
    return _served(event)


def usage_for(store: Store, meter_id: str, customer_id: str, start: int, end: int) -> int:
    """Aggregated usage for events with ``start <= timestamp < end``, whole units."""
    meter = store.get("billing.meter", meter_id)
    events = sorted(
        (
            e
            for e in store.objects.get("billing.meter_event", {}).values()
            if e["_meter"] == meter_id and e["_customer"] == customer_id and start <= e["timestamp"] < end
        ),
        key=lambda e: (e["timestamp"], e["_seq"]),
    )
    formula = meter["default_aggregation"]["formula"]
    if formula == "count":
        return len(events)
    if not events:
        return 0
    if formula == "last":
        return int(Decimal(events[-1]["_value"]))
    return int(sum(Decimal(e["_value"]) for e in events))


@route("GET", "/v1/billing/meters/<id>/event_summaries")
def meter_event_summaries(ctx: Ctx, id: str) -> dict[str, Any]:
    store, params = ctx.store, ctx.params
    meter = store.get("billing.meter", id)
    customer = store.get("customer", require(params, "customer"), "customer")
    start = as_int(params, "start_time")
    end = as_int(params, "end_time")
    if start is None or end is None:
        raise invalid_param("start_time", "Missing required param: start_time/end_time.")
    summary = {
        "id": store.new_id("mtrusg"),
        "object": "billing.meter_event_summary",
        "aggregated_value": usage_for(store, meter["id"], customer["id"], start, end),
        "end_time": end,
        "livemode": False,
        "meter": meter["id"],
        "start_time": start,
    }
    return list_object([summary], f"/v1/billing/meters/{id}/event_summaries")


def _served(event: dict[str, Any]) -> dict[str, Any]:
    """A meter event as Stripe answers: its ``identifier`` is its key (the store files it under
    ``id``, which the API object does not have)."""
    out = public(event)
    del out["id"]
    return out
