"""Saving a card for later off-session payments (what auto-recharge charges) through Checkout in
setup mode.

The cardholder's bank may ask them to authenticate the card on the way (its SetupIntent goes
`requires_action` until they answer on Stripe's page). The card becomes the customer's default
only once that SetupIntent has succeeded, re-read from Stripe on the return page and on
`checkout.session.completed`, in any order and any number of times. A failed authentication saves
nothing: Stripe's page says so and keeps the session open, and Tally's page says so on return.
"""

from dataclasses import dataclass

from billing import selectors
from billing.gateway.client import stripe_client
from billing.gateway.customers import customer_ensure
from teams.models import Organization

SETUP_METADATA = "tally_card_setup"


@dataclass(frozen=True)
class CardSetup:
    saved: bool
    last4: str = ""
    failure_message: str = ""


def card_setup_start(*, organization: Organization, currency: str, success_url: str, cancel_url: str) -> str:
    """A Checkout Session in setup mode for a card `organization` pays with later; its URL.
    `success_url` should carry `{CHECKOUT_SESSION_ID}`, which Stripe fills in."""
    metadata = {"tally_org_id": str(organization.pk), SETUP_METADATA: "1"}
    session = stripe_client().v1.checkout.sessions.create(
        {
            "mode": "setup",
            "customer": customer_ensure(organization=organization),
            "currency": currency,
            "payment_method_types": ["card"],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "metadata": metadata,
            "setup_intent_data": {"metadata": metadata},
        }
    )
    return session.url


def _failure_of(intent) -> str:
    error = (intent.get("last_setup_error") if intent is not None else None) or {}
    return error.get("message") or ""


def card_setup_settle(*, session_id: str, organization: Organization | None = None) -> CardSetup:
    """Make the session's card the customer's default once its SetupIntent has succeeded.
    With `organization`, a session of another organization's is not looked at."""
    client = stripe_client()
    session = client.v1.checkout.sessions.retrieve(session_id, {"expand": ["setup_intent"]})
    metadata = session.metadata or {}
    if session.mode != "setup" or not metadata.get(SETUP_METADATA):
        return CardSetup(saved=False, failure_message="This is not a card being saved.")
    if organization is not None and metadata.get("tally_org_id") != str(organization.pk):
        return CardSetup(saved=False, failure_message="This is not a card being saved.")
    intent = session.setup_intent if not isinstance(session.setup_intent, str) else None
    if session.status != "complete" or intent is None or intent.status != "succeeded":
        return CardSetup(saved=False, failure_message=_failure_of(intent))
    card = client.v1.payment_methods.retrieve(
        intent.payment_method if isinstance(intent.payment_method, str) else intent.payment_method.id
    )
    customer = client.v1.customers.retrieve(session.customer)
    default = (customer.get("invoice_settings") or {}).get("default_payment_method")
    if (default if isinstance(default, str) else getattr(default, "id", None)) != card.id:
        client.v1.customers.update(
            session.customer, {"invoice_settings": {"default_payment_method": card.id}}
        )
    return CardSetup(saved=True, last4=(card.get("card") or {}).get("last4") or "")


def card_setup_last_failure(*, organization: Organization) -> str:
    """Why the organization's latest attempt to save a card failed (its bank refused to
    authenticate it, say), or "" when it did not fail."""
    customer_id = selectors.stripe_customer_id_of(organization)
    if not customer_id:
        return ""
    latest = stripe_client().v1.setup_intents.list({"customer": customer_id, "limit": 1}).data
    if not latest or latest[0].status != "requires_payment_method":
        return ""
    return _failure_of(latest[0])
