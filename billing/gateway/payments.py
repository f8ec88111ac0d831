"""One-time payments through Stripe, for the other apps' services (credit packages, recharges).

Billing owns every conversation with Stripe; callers say what to sell and keep their own record.
Nothing here may run inside a database transaction: each function calls Stripe, with an
idempotency key chosen by the caller from a row it has already committed.
"""

from collections.abc import Callable
from dataclasses import dataclass

import stripe

from billing import selectors
from billing.gateway.client import stripe_client
from billing.gateway.customers import customer_ensure
from billing.gateway.prices import price_ensure, product_ensure
from common.errors import ServiceError
from teams.models import Organization


class PaymentUnavailable(ServiceError):
    """The organization has no saved card to charge off-session."""

    def __init__(self, message: str):
        super().__init__("no_saved_card", message, status=409)


@dataclass(frozen=True)
class OneTimePrice:
    """What is sold: `key` names the Stripe product and price lookup key, and stays stable."""

    key: str
    name: str
    description: str
    unit_amount: int
    currency: str


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str
    price_id: str


@dataclass(frozen=True)
class OffSessionCharge:
    payment_intent_id: str
    succeeded: bool
    failure_code: str = ""
    failure_message: str = ""


class CheckoutResult:
    """How a payment-mode Checkout Session stands, as billing re-read it from Stripe."""

    PAID = "paid"
    PROCESSING = "processing"  # completed with a delayed method; the bank has not answered
    ABANDONED = "abandoned"  # expired before it was paid
    FAILED = "failed"  # the delayed payment was refused


@dataclass(frozen=True)
class PaymentCheckoutOutcome:
    session_id: str
    metadata: dict[str, str]
    result: str
    payment_intent_id: str = ""
    failure_message: str = ""
    amount_refunded: int = 0  # of the payment's charge, when billing read it


PaymentCheckoutHandler = Callable[[PaymentCheckoutOutcome], None]
_checkout_handlers: list[PaymentCheckoutHandler] = []


def payment_checkout_register(handler: PaymentCheckoutHandler) -> None:
    """The app that sold something through `payment_checkout_start` (credits, for packages)
    hears how each payment checkout ends. Billing re-reads the session from Stripe for every
    event and calls every handler; each recognises its own sessions by their metadata and must
    be safe to call again with the same outcome (webhooks repeat and arrive out of order)."""
    if handler not in _checkout_handlers:
        _checkout_handlers.append(handler)


def payment_checkout_settled(*, outcome: PaymentCheckoutOutcome) -> None:
    for handler in list(_checkout_handlers):
        handler(outcome)


def one_time_price_ensure(*, price: OneTimePrice, client=None) -> str:
    """The Stripe price selling `price`, found by its lookup key or created (a changed amount
    is a new price that takes over the key; the old one is archived)."""
    client = client or stripe_client()
    lines: list[str] = []
    product_id = product_ensure(
        client, f"tally_{price.key}", price.name, price.description, price.key, False, lines
    )
    params = {"currency": price.currency, "unit_amount": price.unit_amount, "nickname": price.name}
    return price_ensure(client, price.key, product_id, params, price.name, False, lines)


def payment_checkout_start(
    *,
    organization: Organization,
    price: OneTimePrice,
    metadata: dict[str, str],
    success_url: str,
    cancel_url: str,
    idempotency_key: str,
) -> CheckoutSession:
    """A Checkout Session in payment mode for one unit of `price`.

    The price is found again by lookup key, or created (a changed amount becomes a new price
    that takes over the key), so Checkout charges exactly what the caller recorded. The card is
    saved on the customer for later off-session charges (auto-recharge).
    """
    client = stripe_client()
    price_id = one_time_price_ensure(price=price, client=client)
    customer_id = customer_ensure(organization=organization)
    session = client.v1.checkout.sessions.create(
        {
            "mode": "payment",
            "customer": customer_id,
            "line_items": [{"price": price_id, "quantity": 1}],
            "client_reference_id": str(organization.pk),
            "success_url": success_url,
            "cancel_url": cancel_url,
            "metadata": metadata,
            "payment_intent_data": {
                "metadata": metadata,
                "description": price.name,
                "setup_future_usage": "off_session",
            },
        },
        {"idempotency_key": idempotency_key},
    )
    return CheckoutSession(id=session.id, url=session.url, price_id=price_id)


def _saved_card(client: stripe.StripeClient, customer_id: str) -> str | None:
    customer = client.v1.customers.retrieve(customer_id)
    default = (customer.get("invoice_settings") or {}).get("default_payment_method")
    if default:
        return default if isinstance(default, str) else default.id
    # No default set: the card saved by the last Checkout payment.
    cards = client.v1.customers.payment_methods.list(customer_id, {"type": "card", "limit": 1}).data
    return cards[0].id if cards else None


def payment_card_on_file(*, organization: Organization) -> bool:
    """Whether an off-session charge has a card to use (what auto-recharge needs)."""
    customer_id = selectors.stripe_customer_id_of(organization)
    return bool(customer_id) and _saved_card(stripe_client(), customer_id) is not None


def payment_charge_saved_card(
    *,
    organization: Organization,
    amount: int,
    currency: str,
    description: str,
    metadata: dict[str, str],
    idempotency_key: str,
) -> OffSessionCharge:
    """Charge the organization's saved card now, without the person present.

    A declined card is an outcome, not an error: it comes back with Stripe's code and message.
    Other Stripe errors (network, rate limits) are raised; retrying with the same key is safe.
    """
    customer_id = selectors.stripe_customer_id_of(organization)
    if not customer_id:
        raise PaymentUnavailable("There is no card on file: buy a package once to save one.")
    client = stripe_client()
    card = _saved_card(client, customer_id)
    if card is None:
        raise PaymentUnavailable("There is no card on file: buy a package once to save one.")
    try:
        intent = client.v1.payment_intents.create(
            {
                "amount": amount,
                "currency": currency,
                "customer": customer_id,
                "payment_method": card,
                "off_session": True,
                "confirm": True,
                "description": description,
                "metadata": metadata,
            },
            {"idempotency_key": idempotency_key},
        )
    except stripe.CardError as error:
        failed = (error.error.payment_intent if error.error else None) or {}
        return OffSessionCharge(
            payment_intent_id=failed.get("id", ""),
            succeeded=False,
            failure_code=error.code or "card_declined",
            failure_message=error.user_message or "The card was declined.",
        )
    if intent.status != "succeeded":
        # e.g. requires_action: the bank wants the person present, which off-session cannot do.
        return OffSessionCharge(
            payment_intent_id=intent.id,
            succeeded=False,
            failure_code="authentication_required",
            failure_message="The bank asked for the cardholder to confirm this payment.",
        )
    return OffSessionCharge(payment_intent_id=intent.id, succeeded=True)


@dataclass(frozen=True)
class OnSessionConfirmation:
    """A PaymentIntent as Stripe has it after the cardholder was asked to confirm it."""

    status: str
    redirect_url: str = ""  # where the cardholder authenticates, when Stripe asks for it
    failure_message: str = ""


def _id_of(value) -> str:
    return value if isinstance(value, str) else (value or {}).get("id", "") if value else ""


def _confirmation(intent) -> OnSessionConfirmation:
    action = intent.get("next_action") or {}
    redirect = (action.get("redirect_to_url") or {}).get("url") or ""
    error = intent.get("last_payment_error") or {}
    return OnSessionConfirmation(
        status=intent.status, redirect_url=redirect, failure_message=error.get("message") or ""
    )


def payment_intent_read(*, payment_intent_id: str) -> OnSessionConfirmation:
    """How a payment stands in Stripe now (after the cardholder came back from their bank)."""
    return _confirmation(stripe_client().v1.payment_intents.retrieve(payment_intent_id))


def payment_confirm_on_session(*, payment_intent_id: str, return_url: str) -> OnSessionConfirmation:
    """Bring the cardholder back to an off-session payment their bank wants them present for, as
    Stripe advises: the same PaymentIntent is confirmed again, on session, with the card it
    tried, and the bank's step (`next_action.redirect_to_url`) returns to `return_url`. A payment
    already waiting for the step, or settled, is only read (a second click confirms nothing)."""
    client = stripe_client()
    intent = client.v1.payment_intents.retrieve(payment_intent_id)
    if intent.status in ("requires_payment_method", "requires_confirmation"):
        card = _id_of(intent.get("payment_method")) or _id_of(
            (intent.get("last_payment_error") or {}).get("payment_method")
        )
        if not card:
            raise PaymentUnavailable("This payment has no card to confirm: buy a package instead.")
        intent = client.v1.payment_intents.confirm(
            intent.id, {"payment_method": card, "return_url": return_url}
        )
    return _confirmation(intent)
