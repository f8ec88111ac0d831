"""Events (list, retrieve) and webhook endpoints (create returns the signing secret)."""

from typing import Any

from stripe_sim.core import deleted, list_response, new_object, respond, update_fields
from stripe_sim.errors import invalid_param
from stripe_sim.params import as_list, merge_metadata, require
from stripe_sim.routing import Ctx, route
from stripe_sim.store import Store


@route("GET", "/v1/events/<id>")
def event_retrieve(ctx: Ctx, id: str) -> dict[str, Any]:
    return respond(ctx, ctx.store.get("event", id))


@route("GET", "/v1/events")
def event_list(ctx: Ctx) -> dict[str, Any]:
    items = ctx.store.all("event")
    if ctx.params.get("type"):
        wanted = str(ctx.params["type"])
        if wanted.endswith("*"):
            items = [e for e in items if e["type"].startswith(wanted[:-1])]
        else:
            items = [e for e in items if e["type"] == wanted]
    types = as_list(ctx.params, "types")
    if types:
        items = [e for e in items if e["type"] in types]
    return list_response(ctx, items, "/v1/events")


def create_endpoint(
    store: Store,
    url: str,
    enabled_events: list[str],
    *,
    secret: str | None = None,
    description: str | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    endpoint = new_object(
        store,
        "webhook_endpoint",
        api_version=None,
        description=description,
        enabled_events=enabled_events,
        metadata=dict(metadata or {}),
        status="enabled",
        url=url,
        _secret=secret or "whsec_" + store.new_id("x", 32)[2:],
    )
    store.add(endpoint)
    return endpoint


@route("POST", "/v1/webhook_endpoints")
def endpoint_create(ctx: Ctx) -> dict[str, Any]:
    params = ctx.params
    events = [str(e) for e in as_list(params, "enabled_events")]
    if not events:
        raise invalid_param(
            "enabled_events", "Missing required param: enabled_events.", code="parameter_missing"
        )
    endpoint = create_endpoint(
        ctx.store,
        str(require(params, "url")),
        events,
        description=params.get("description") or None,
        metadata=merge_metadata({}, params.get("metadata")),
    )
    endpoint["api_version"] = params.get("api_version") or None
    out = respond(ctx, endpoint)
    out["secret"] = endpoint["_secret"]  # only ever shown on creation, as on Stripe
    return out


@route("GET", "/v1/webhook_endpoints/<id>")
def endpoint_retrieve(ctx: Ctx, id: str) -> dict[str, Any]:
    return respond(ctx, ctx.store.get("webhook_endpoint", id))


@route("POST", "/v1/webhook_endpoints/<id>")
def endpoint_update(ctx: Ctx, id: str) -> dict[str, Any]:
    endpoint = ctx.store.get("webhook_endpoint", id)
    update_fields(endpoint, ctx.params, ("url", "description"))
    if "enabled_events" in ctx.params:
        endpoint["enabled_events"] = [str(e) for e in as_list(ctx.params, "enabled_events")]
    if "disabled" in ctx.params:
        endpoint["status"] = "disabled" if ctx.params["disabled"] == "true" else "enabled"
    if "metadata" in ctx.params:
        endpoint["metadata"] = merge_metadata(endpoint["metadata"], ctx.params["metadata"])
    return respond(ctx, endpoint)


@route("DELETE", "/v1/webhook_endpoints/<id>")
def endpoint_delete(ctx: Ctx, id: str) -> dict[str, Any]:
    endpoint = ctx.store.get("webhook_endpoint", id)
    ctx.store.delete(endpoint)
    return deleted(endpoint)


@route("GET", "/v1/webhook_endpoints")
def endpoint_list(ctx: Ctx) -> dict[str, Any]:
    return list_response(ctx, ctx.store.all("webhook_endpoint"), "/v1/webhook_endpoints")
