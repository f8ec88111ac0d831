"""Disputes: the test card ``4000 0000 0000 0259`` (``pm_card_createDispute``,
``tok_createDispute``) succeeds and is then disputed as fraudulent, as in Stripe's test mode.

The dispute opens as ``needs_response`` with its funds withdrawn. Evidence follows Stripe's test
convention: submitting ``winning_evidence`` as ``evidence[uncategorized_text]`` closes it as won
(funds reinstated), ``losing_evidence`` as lost; ``POST /v1/disputes/<id>/close`` accepts it
as lost. Each step emits Stripe's events: ``charge.dispute.created``, ``.funds_withdrawn``,
``.updated``, ``.closed`` and ``.funds_reinstated``.
"""

from typing import Any

from stripe_sim import core
from stripe_sim.errors import invalid
from stripe_sim.events import changed, emit
from stripe_sim.params import as_bool, as_dict, merge_metadata
from stripe_sim.render import public, renderer
from stripe_sim.routing import Ctx, route
from stripe_sim.store import Store

EVIDENCE_FIELDS = (
    "access_activity_log",
    "billing_address",
    "cancellation_policy",
    "cancellation_policy_disclosure",
    "cancellation_rebuttal",
    "customer_communication",
    "customer_email_address",
    "customer_name",
    "customer_purchase_ip",
    "customer_signature",
    "duplicate_charge_documentation",
    "duplicate_charge_explanation",
    "duplicate_charge_id",
    "product_description",
    "receipt",
    "refund_policy",
    "refund_policy_disclosure",
    "refund_refusal_explanation",
    "service_date",
    "service_documentation",
    "shipping_address",
    "shipping_carrier",
    "shipping_date",
    "shipping_documentation",
    "shipping_tracking_number",
    "uncategorized_file",
    "uncategorized_text",
)
CLOSED = ("won", "lost", "warning_closed")
# Stripe's card networks give this long to answer a dispute.
RESPONSE_WINDOW = 7 * 86400
NETWORK_REASON_CODES = {"fraudulent": "10.4"}


def _balance_transaction(store: Store, dispute: dict[str, Any], amount: int, category: str) -> dict:
    now = store.now_for_customer(store.get("charge", dispute["charge"]).get("customer"))
    txn = core.new_object(
        store,
        "balance_transaction",
        created=now,
        amount=amount,
        available_on=now,
        currency=dispute["currency"],
        description=f"Chargeback withdrawal for {dispute['charge']}"
        if amount < 0
        else f"Chargeback reversal for {dispute['charge']}",
        fee=0,
        fee_details=[],
        net=amount,
        reporting_category=category,
        source=dispute["id"],
        status="available",
        type="adjustment",
        balance_type="payments",
    )
    store.add(txn)
    return txn


def open_dispute(store: Store, charge: dict[str, Any], pm: dict[str, Any]) -> None:
    """After a successful charge on the dispute card: the cardholder disputes it."""
    reason = pm.get("_dispute")
    if not reason:
        return
    now = store.now_for_customer(charge.get("customer"))
    card = pm["card"]
    dispute = core.new_object(
        store,
        "dispute",
        created=now,
        amount=charge["amount"] - charge["amount_refunded"],
        balance_transactions=[],
        charge=charge["id"],
        currency=charge["currency"],
        enhanced_eligibility_types=[],
        evidence={**{name: None for name in EVIDENCE_FIELDS}, "enhanced_evidence": {}},
        evidence_details={
            "due_by": now + RESPONSE_WINDOW,
            "enhanced_eligibility": {},
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        is_charge_refundable=False,
        metadata={},
        payment_intent=charge["payment_intent"],
        payment_method_details={
            "card": {
                "brand": card["brand"],
                "case_type": "chargeback",
                "network": card["brand"],
                "network_reason_code": NETWORK_REASON_CODES.get(reason, "4837"),
            },
            "type": "card",
        },
        reason=reason,
        status="needs_response",
    )
    store.add(dispute)
    before = public(charge)
    charge["disputed"] = True
    emit(store, "charge.dispute.created", dispute)
    emit(store, "charge.updated", charge, changed(before, charge))
    txn = _balance_transaction(store, dispute, -dispute["amount"], "dispute")
    dispute["balance_transactions"].append(txn["id"])
    emit(store, "charge.dispute.funds_withdrawn", dispute)


core.CHARGE_SUCCEEDED_HOOKS.append(open_dispute)


@renderer("dispute")
def _render_dispute(store: Store, dispute: dict[str, Any], expand: set[str]) -> dict[str, Any]:
    out = public(dispute)
    # Stripe embeds the balance transactions themselves, not their ids.
    out["balance_transactions"] = [
        public(store.get("balance_transaction", t)) for t in dispute["balance_transactions"]
    ]
    return out


def _close(store: Store, dispute: dict[str, Any], status: str) -> None:
    before = public(dispute)
    dispute["status"] = status
    emit(store, "charge.dispute.closed", dispute, changed(before, dispute))
    if status == "won":
        txn = _balance_transaction(store, dispute, dispute["amount"], "dispute_reversal")
        dispute["balance_transactions"].append(txn["id"])
        emit(store, "charge.dispute.funds_reinstated", dispute)


def _open(store: Store, id: str) -> dict[str, Any]:
    dispute = store.get("dispute", id)
    if dispute["status"] in CLOSED:
        raise invalid("This dispute is already closed", code="charge_dispute_closed")
    return dispute


@route("GET", "/v1/disputes/<id>")
def dispute_retrieve(ctx: Ctx, id: str) -> dict[str, Any]:
    return core.respond(ctx, ctx.store.get("dispute", id))


@route("POST", "/v1/disputes/<id>")
def dispute_update(ctx: Ctx, id: str) -> dict[str, Any]:
    """Stage or submit evidence (``submit`` defaults to true), or change metadata."""
    store, params = ctx.store, ctx.params
    dispute = store.get("dispute", id)
    evidence = as_dict(params, "evidence")
    if evidence or "submit" in params:
        dispute = _open(store, id)
    before = public(dispute)
    if "metadata" in params:
        dispute["metadata"] = merge_metadata(dispute["metadata"], params["metadata"])
    for name, value in evidence.items():
        if name not in EVIDENCE_FIELDS:
            raise invalid(f"Received unknown parameter: evidence[{name}]", code="parameter_unknown")
        dispute["evidence"][name] = value or None
    submit = as_bool(params, "submit", True) and bool(evidence or params.get("submit"))
    if submit:
        details = dispute["evidence_details"]
        details["has_evidence"] = True
        details["submission_count"] += 1
        dispute["status"] = "under_review"
    if public(dispute) != before:
        emit(store, "charge.dispute.updated", dispute, changed(before, dispute))
    text = dispute["evidence"].get("uncategorized_text") or ""
    if submit and "winning_evidence" in text:
        _close(store, dispute, "won")
    elif submit and "losing_evidence" in text:
        _close(store, dispute, "lost")
    return core.respond(ctx, dispute)


@route("POST", "/v1/disputes/<id>/close")
def dispute_close(ctx: Ctx, id: str) -> dict[str, Any]:
    """Accept the dispute: it is lost, and cannot be reopened."""
    dispute = _open(ctx.store, id)
    _close(ctx.store, dispute, "lost")
    return core.respond(ctx, dispute)


@route("GET", "/v1/disputes")
def dispute_list(ctx: Ctx) -> dict[str, Any]:
    items = ctx.store.all("dispute")
    for name in ("charge", "payment_intent"):
        if ctx.params.get(name):
            items = [d for d in items if d[name] == ctx.params[name]]
    return core.list_response(ctx, items, "/v1/disputes")
