"""3D Secure: the step where the cardholder answers their bank for a payment that asked for it.

A card in ``core.AUTHENTICATION_CARDS`` leaves its payment intent ``requires_action`` (invoices
stay open with ``invoice.payment_action_required``). The cardholder completes or fails the step on
the hosted invoice page, on Checkout before it pays, or on the page the intent's ``next_action``
names; completing it charges the card (which may still be declined), failing it leaves the intent
``requires_payment_method`` with ``payment_intent_authentication_failure``.
"""

from html import escape
from typing import Any

from stripe_sim import billing
from stripe_sim.core import AUTHENTICATION_CARDS, confirm_payment_intent
from stripe_sim.errors import StripeError, invalid
from stripe_sim.events import emit
from stripe_sim.render import public
from stripe_sim.store import Store

FAILED_MESSAGE = (
    "The provided PaymentMethod has failed authentication. You can provide payment_method_data "
    "or a new PaymentMethod to attempt to fulfill this PaymentIntent again."
)
OUTCOMES = ("complete", "fail")


def authenticate(store: Store, pi: dict[str, Any], outcome: str) -> None:
    """The cardholder's answer for ``pi``; an invoice it pays follows (paid, or still open)."""
    if outcome not in OUTCOMES:
        raise invalid(f"Unknown authentication outcome: {outcome!r}.", code="parameter_invalid_string")
    if pi["status"] != "requires_action":
        raise invalid(
            f"This PaymentIntent's status is {pi['status']}, so it does not need authentication.",
            code="payment_intent_unexpected_state",
        )
    pm = store.get("payment_method", pi["payment_method"])
    if outcome == "complete":
        pi["_authenticated"] = True
        confirm_payment_intent(store, pi, pm, raise_on_decline=False)
    else:
        pi["status"] = "requires_payment_method"
        pi["next_action"] = None
        pi["last_payment_error"] = {
            "code": "payment_intent_authentication_failure",
            "doc_url": "https://stripe.com/docs/error-codes/payment-intent-authentication-failure",
            "message": FAILED_MESSAGE,
            "payment_method": public(pm),
            "type": "invalid_request_error",
        }
        emit(store, "payment_intent.payment_failed", pi)
    invoice = billing.invoice_of_payment_intent(store, pi["id"])
    if invoice is not None:
        billing.debit_settled(store, invoice, pi)


def pending_intent(store: Store, invoice: dict[str, Any]) -> dict[str, Any] | None:
    """The invoice's payment intent waiting for the cardholder, if any."""
    if invoice["status"] not in ("open", "uncollectible"):
        return None
    for record in store.all("invoice_payment"):
        if record["invoice"] == invoice["id"] and record["is_default"]:
            pi = store.find("payment_intent", record["payment"].get("payment_intent"))
            if pi is not None and pi["status"] == "requires_action":
                return pi
    return None


def step_html(pi: dict[str, Any], amount: str, hidden: dict[str, str] | None = None) -> str:
    """The bank's challenge: complete or fail, as Stripe's test authentication page offers."""
    fields = "".join(
        f'<input type=hidden name={escape(name)} value="{escape(value)}">'
        for name, value in (hidden or {}).items()
    )
    return (
        "<section data-authentication><h2>Authenticate this payment</h2>"
        f"<p>Your bank asks you to confirm the payment of {escape(amount)}"
        f"{' (' + escape(pi['id']) + ')' if pi.get('id') else ''}.</p>"
        f"<form method=post>{fields}"
        "<button name=authentication value=complete>Complete authentication</button> "
        "<button name=authentication value=fail>Fail authentication</button></form></section>"
    )


def card_asks_on_session(card_number: str) -> bool:
    """Whether a card typed on a hosted page asks for authentication before it pays (a new card
    is not set up for anything yet, so every authentication card does)."""
    digits = "".join(ch for ch in str(card_number) if ch.isdigit())
    return digits in AUTHENTICATION_CARDS


def intent_page(store: Store, pi_id: str, form: dict[str, str] | None = None) -> tuple[int, str]:
    """The page ``next_action.use_stripe_sdk.stripe_js`` names: the step for one payment intent.
    (status, body html); the caller wraps it in the hosted pages' layout."""
    pi = store.find("payment_intent", pi_id)
    if pi is None:
        return 404, "<h1>This payment does not exist.</h1>"
    if form is not None:
        try:
            authenticate(store, pi, form.get("authentication", ""))
        except StripeError as exc:
            return 400, f"<p class=error role=alert>{escape(exc.message)}</p>"
        status = escape(pi["status"])
        return 200, f"<h1>Authentication done</h1><p>Payment status: <strong>{status}</strong></p>"
    if pi["status"] != "requires_action":
        return 200, f"<p>Payment status: <strong>{escape(pi['status'])}</strong></p>"
    return 200, step_html(pi, f"{pi['amount']} {pi['currency'].upper()} (minor units)")
