"""Test clocks: frozen time for the customers attached to them, advanced on request.

Advancing runs every timer that falls due on the way (period ends, trial ends, payment retries,
bank debits settling, expiry of incomplete subscriptions and checkout sessions, scheduled
cancellations) in time order,
each at its own moment, so the events come out as Stripe would send them over that stretch of time.
Objects on no clock live in wall time, which ``advance_wall_time`` moves on the same way.
"""

import time
from collections.abc import Callable
from typing import Any

from stripe_sim import billing, checkout, discounts
from stripe_sim.core import deleted, list_response, new_object, respond
from stripe_sim.errors import invalid, invalid_param
from stripe_sim.events import emit, emit_updates
from stripe_sim.params import as_int, require
from stripe_sim.routing import Ctx, route
from stripe_sim.store import Store

TRIAL_WILL_END_NOTICE = 3 * 86400
MAX_STEPS = 10_000


@route("POST", "/v1/test_helpers/test_clocks")
def clock_create(ctx: Ctx) -> dict[str, Any]:
    frozen = as_int(ctx.params, "frozen_time")
    if frozen is None:
        raise invalid_param("frozen_time", "Missing required param: frozen_time.", code="parameter_missing")
    clock = new_object(
        ctx.store,
        "test_helpers.test_clock",
        deletes_after=ctx.store.now() + 30 * 86400,
        frozen_time=frozen,
        name=ctx.params.get("name") or None,
        status="ready",
        status_details={},
    )
    ctx.store.add(clock)
    emit(ctx.store, "test_helpers.test_clock.created", clock)
    return respond(ctx, clock)


@route("GET", "/v1/test_helpers/test_clocks/<id>")
def clock_retrieve(ctx: Ctx, id: str) -> dict[str, Any]:
    return respond(ctx, ctx.store.get("test_helpers.test_clock", id))


@route("GET", "/v1/test_helpers/test_clocks")
def clock_list(ctx: Ctx) -> dict[str, Any]:
    return list_response(ctx, ctx.store.all("test_helpers.test_clock"), "/v1/test_helpers/test_clocks")


@route("DELETE", "/v1/test_helpers/test_clocks/<id>")
def clock_delete(ctx: Ctx, id: str) -> dict[str, Any]:
    """Deleting a clock deletes the customers on it and everything of theirs, as on Stripe."""
    store = ctx.store
    clock = store.get("test_helpers.test_clock", id)
    for customer in store.all("customer"):
        if customer.get("test_clock") == id:
            for sub in store.all("subscription"):
                if sub["customer"] == customer["id"]:
                    store.delete(sub)
            store.delete(customer)
    store.delete(clock)
    emit(store, "test_helpers.test_clock.deleted", clock)
    return deleted(clock)


@route("POST", "/v1/test_helpers/test_clocks/<id>/advance")
def clock_advance(ctx: Ctx, id: str) -> dict[str, Any]:
    store = ctx.store
    clock = store.get("test_helpers.test_clock", id)
    target = as_int(ctx.params, "frozen_time")
    if target is None:
        require(ctx.params, "frozen_time")
        raise AssertionError("unreachable")
    if target <= clock["frozen_time"]:
        raise invalid_param(
            "frozen_time",
            "The test clock cannot be moved backwards: frozen_time must be after the current frozen_time.",
        )
    advance(store, clock, target)
    return respond(ctx, clock)


def advance(store: Store, clock: dict[str, Any], target: int) -> None:
    clock["status"] = "advancing"
    clock["status_details"] = {"advancing": {"target_frozen_time": target}}
    emit(store, "test_helpers.test_clock.advancing", clock)
    for _ in range(MAX_STEPS):
        due = _next_timer(store, clock["id"], target)
        if due is None:
            break
        at, action = due
        clock["frozen_time"] = max(clock["frozen_time"], at)
        action()
        emit_updates(store)
    else:
        raise invalid("The test clock advanced through too many billing events at once.")
    clock["frozen_time"] = target
    clock["status"] = "ready"
    clock["status_details"] = {}
    emit(store, "test_helpers.test_clock.ready", clock)


def advance_wall_time(store: Store, target: int) -> None:
    """Move "now" on to ``target`` for everything on no test clock, running what falls due on the
    way as a clock advance does. Time never goes back: a timer already overdue runs at once."""
    for _ in range(MAX_STEPS):
        due = _next_timer(store, None, target)
        if due is None:
            break
        at, action = due
        store.offset = max(store.offset, at - int(time.time()))
        action()
        emit_updates(store)
    else:
        raise invalid("Time advanced through too many billing events at once.")
    store.offset = max(store.offset, target - int(time.time()))


def _next_timer(store: Store, clock_id: str | None, target: int) -> tuple[int, Callable[[], None]] | None:
    """The earliest timer due at or before ``target`` for the customers on ``clock_id`` (None: on
    no clock); retries before renewals on a tie."""
    timers: list[tuple[int, int, int, Callable[[], None]]] = []
    customers: set[str | None] = {c["id"] for c in store.all("customer") if c.get("test_clock") == clock_id}
    if clock_id is None:
        customers.add(None)  # checkout sessions that will create their customer
    for invoice in store.all("invoice"):
        attempt = invoice.get("next_payment_attempt")
        if (
            invoice["customer"] in customers
            and invoice["status"] == "open"
            and invoice["collection_method"] == "charge_automatically"
            and attempt is not None
            and attempt <= target
        ):
            timers.append((attempt, 0, invoice["_seq"], _bind(billing.retry_invoice, store, invoice)))
    for pi in checkout.processing_debits(store):
        settle_at = pi.get("_settle_at")
        if pi["customer"] in customers and settle_at is not None and settle_at <= target:
            timers.append((settle_at, 0, pi["_seq"], _bind(checkout.debit_settle, store, pi)))
    for session in store.all("checkout.session"):
        if (
            session["customer"] in customers
            and session["status"] == "open"
            and session["expires_at"] <= target
        ):
            timers.append((session["expires_at"], 1, session["_seq"], _bind(checkout.expire, store, session)))
    for discount in discounts.due_ends(store, customers, target):
        timers.append((discount["end"], 1, discount["_seq"], _bind(discounts.end_discount, store, discount)))
    for sub in store.all("subscription"):
        if sub["customer"] not in customers:
            continue
        status = sub["status"]
        if status == "incomplete":
            expires = sub["created"] + billing.INCOMPLETE_EXPIRY
            if expires <= target:
                timers.append((expires, 1, sub["_seq"], _bind(billing.expire_incomplete, store, sub)))
            continue
        if status not in ("active", "trialing", "past_due", "unpaid"):
            continue
        if sub["cancel_at"] and sub["cancel_at"] < sub["_period_end"] and sub["cancel_at"] <= target:
            timers.append((sub["cancel_at"], 1, sub["_seq"], _bind(_cancel_now, store, sub)))
            continue
        if status == "trialing" and not sub.get("_trial_will_end_sent"):
            notice = sub["trial_end"] - TRIAL_WILL_END_NOTICE
            if sub["trial_start"] < notice <= target:
                timers.append((notice, 1, sub["_seq"], _bind(_trial_will_end, store, sub)))
        if sub["_period_end"] <= target:
            timers.append((sub["_period_end"], 2, sub["_seq"], _bind(billing.cycle_subscription, store, sub)))
    if not timers:
        return None
    at, _, _, action = min(timers, key=lambda t: t[:3])
    return at, action


def _bind(fn: Callable[..., None], store: Store, obj: dict[str, Any]) -> Callable[[], None]:
    return lambda: fn(store, obj)


def _cancel_now(store: Store, sub: dict[str, Any]) -> None:
    billing.end_subscription(store, sub, reason="cancellation_requested")


def _trial_will_end(store: Store, sub: dict[str, Any]) -> None:
    sub["_trial_will_end_sent"] = True
    emit(store, "customer.subscription.trial_will_end", sub)
