"""dj-stripe 2.11 syncs the simulator's objects into its mirror tables unchanged."""

from collections.abc import Iterator

import pytest
import stripe
from djstripe import models as djstripe_models
from werkzeug.test import Client

from tests.stripe_sim import helpers
from tests.stripe_sim.conftest import API_KEY, Sim

pytestmark = pytest.mark.django_db


@pytest.fixture
def sdk_at_sim(sim: Sim, settings) -> Iterator[None]:
    """dj-stripe calls the SDK's module-level API (for related objects): point it at the
    simulator for this test only."""
    previous = stripe.api_base, stripe.api_key
    stripe.api_base, stripe.api_key = sim.url, API_KEY
    settings.STRIPE_TEST_SECRET_KEY = API_KEY
    settings.STRIPE_SECRET_KEY = API_KEY
    try:
        yield
    finally:
        stripe.api_base, stripe.api_key = previous


def _sync(model: type, obj: stripe.StripeObject):
    return model.sync_from_stripe_data(obj, api_key=API_KEY)


def test_it_syncs_the_billing_objects(client: stripe.StripeClient, sim: Sim, sdk_at_sim: None) -> None:
    price = helpers.price(client, amount=1200)
    cus = helpers.customer(client)
    sub = client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": price.id, "quantity": 2}]})
    invoice = client.v1.invoices.retrieve(sub.latest_invoice, {"expand": ["payments"]})
    pi = client.v1.payment_intents.retrieve(invoice.payments.data[0].payment.payment_intent)
    charge = client.v1.charges.retrieve(pi.latest_charge)

    assert _sync(djstripe_models.Customer, client.v1.customers.retrieve(cus.id)).id == cus.id
    assert _sync(djstripe_models.Product, client.v1.products.retrieve(price.product)).id
    synced_price = _sync(djstripe_models.Price, client.v1.prices.retrieve(price.id))
    assert synced_price.unit_amount == 1200
    synced_sub = _sync(djstripe_models.Subscription, client.v1.subscriptions.retrieve(sub.id))
    assert synced_sub.status == "active"
    assert djstripe_models.SubscriptionItem.objects.filter(subscription=synced_sub).count() == 1
    synced_invoice = _sync(djstripe_models.Invoice, invoice)
    assert synced_invoice.stripe_data["amount_paid"] == 2400
    assert djstripe_models.InvoiceItem.objects.count() + djstripe_models.LineItem.objects.count() >= 1
    assert _sync(djstripe_models.PaymentIntent, pi).stripe_data["amount_received"] == 2400
    assert _sync(djstripe_models.Charge, charge).stripe_data["amount"] == 2400


def test_it_syncs_a_completed_checkout_session(
    client: stripe.StripeClient, sim: Sim, sdk_at_sim: None
) -> None:
    price = helpers.price(client, amount=1500)
    session = client.v1.checkout.sessions.create(
        {
            "mode": "subscription",
            "line_items": [{"price": price.id, "quantity": 1}],
            "success_url": "http://127.0.0.1:8000/ok",
            "client_reference_id": "org_1",
        }
    )
    Client(sim.app).post(f"/checkout/{session.id}", data={"card_number": "4242424242424242"})
    done = client.v1.checkout.sessions.retrieve(session.id)
    synced = _sync(djstripe_models.Session, done)
    assert synced.id == session.id
    assert synced.stripe_data["client_reference_id"] == "org_1"
