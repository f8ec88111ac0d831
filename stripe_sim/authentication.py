"""3D Secure: the step where the cardholder answers their bank for a payment that asked for it.

A card in ``core.AUTHENTICATION_CARDS`` leaves its payment intent ``requires_action`` (invoices
stay open with ``invoice.payment_action_required``). The cardholder completes or fails the step on
the hosted invoice page, on Checkout before it pays, or on the page the intent's ``next_action``
names; completing it charges the card (which may still be declined), failing it leaves the intent
``requires_payment_method`` with ``payment_intent_authentication_failure``.
"""

from html import escape
from typing import Any
from urllib.parse import urlencode

from stripe_sim import billing
from stripe_sim.core import AUTHENTICATION_CARDS, authenticate_setup_intent, confirm_payment_intent
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


def step_html(
    pi: dict[str, Any], amount: str, hidden: dict[str, str] | None = None, *, saving: bool = False
) -> str:
    """The bank's challenge: complete or fail, as Stripe's test authentication page offers
    (``saving``: the card is being saved for later payments, nothing is paid now)."""
    fields = "".join(
        f'<input type=hidden name={escape(name)} value="{escape(value)}">'
        for name, value in (hidden or {}).items()
    )
    ref = f" ({escape(pi['id'])})" if pi.get("id") else ""
    if saving:
        asked = "<h2>Authenticate this card</h2><p>Your bank asks you to confirm saving this card"
        asked += f" for later payments{ref}.</p>"
    else:
        asked = "<h2>Authenticate this payment</h2><p>Your bank asks you to confirm the payment"
        asked += f" of {escape(amount)}{ref}.</p>"
    return (
        f"<section data-authentication>{asked}"
        f"<form method=post>{fields}"
        "<button name=authentication value=complete>Complete authentication</button> "
        "<button name=authentication value=fail>Fail authentication</button></form></section>"
    )


def card_asks_on_session(card_number: str) -> bool:
    """Whether a card typed on a hosted page asks for authentication before it pays (a new card
    is not set up for anything yet, so every authentication card does)."""
    digits = "".join(ch for ch in str(card_number) if ch.isdigit())
    return digits in AUTHENTICATION_CARDS


def _return_target(intent: dict[str, Any]) -> str:
    """Where a redirect (``next_action.redirect_to_url``) comes back to once answered: the
    ``return_url`` with the intent's id, client secret and ``redirect_status``, as Stripe adds them."""
    kind = "setup_intent" if intent["object"] == "setup_intent" else "payment_intent"
    status = {"succeeded": "succeeded", "processing": "processing"}.get(intent["status"], "failed")
    query = urlencode(
        {kind: intent["id"], f"{kind}_client_secret": intent["client_secret"], "redirect_status": status}
    )
    url = intent["_return_url"]
    return f"{url}{'&' if '?' in url else '?'}{query}"


def intent_page(store: Store, intent_id: str, form: dict[str, str] | None = None) -> tuple[int, str, str]:
    """The page ``next_action`` names: the step for one payment or setup intent. (status, body
    html, redirect): once answered, an intent confirmed with a ``return_url`` goes back there;
    the caller wraps the body in the hosted pages' layout."""
    setup = intent_id.startswith("seti_")
    intent = store.find("setup_intent" if setup else "payment_intent", intent_id)
    if intent is None:
        return 404, "<h1>This payment does not exist.</h1>", ""
    if form is not None:
        try:
            answer = form.get("authentication", "")
            if answer not in OUTCOMES:
                raise invalid(f"Unknown authentication outcome: {answer!r}.", code="parameter_invalid_string")
            if setup:
                authenticate_setup_intent(store, intent, answer)
            else:
                authenticate(store, intent, answer)
        except StripeError as exc:
            return 400, f"<p class=error role=alert>{escape(exc.message)}</p>", ""
        if intent.get("_return_url"):
            return 303, "", _return_target(intent)
        status = escape(intent["status"])
        return 200, f"<h1>Authentication done</h1><p>Status: <strong>{status}</strong></p>", ""
    if intent["status"] != "requires_action":
        return 200, f"<p>Status: <strong>{escape(intent['status'])}</strong></p>", ""
    if setup:
        return 200, step_html(intent, "", saving=True), ""
    return 200, step_html(intent, f"{intent['amount']} {intent['currency'].upper()} (minor units)"), ""
