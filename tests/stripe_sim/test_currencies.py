"""One price in several currencies (``currency_options``): the subscription and Checkout charge
the currency chosen, and it never changes under the customer."""

from typing import Any

import pytest
import stripe
from werkzeug.test import Client

from tests.stripe_sim import helpers
from tests.stripe_sim.conftest import Sim


def _multi(client: stripe.StripeClient, **extra: Any) -> stripe.Price:
    return helpers.price(
        client,
        amount=1500,
        currency_options={"eur": {"unit_amount": 1400}, "jpy": {"unit_amount": 2200}},
        **extra,
    )


def test_a_price_carries_its_amounts_in_other_currencies(client: stripe.StripeClient) -> None:
    price = _multi(client)
    assert "currency_options" not in price.to_dict()  # left out unless asked for
    expanded = client.v1.prices.retrieve(price.id, {"expand": ["currency_options"]})
    assert (expanded.currency_options["eur"].unit_amount, expanded.currency_options["jpy"].unit_amount) == (
        1400,
        2200,
    )
    with pytest.raises(stripe.InvalidRequestError):
        helpers.price(client, amount=100, currency_options={"usd": {"unit_amount": 90}})


def test_a_subscription_in_euros_is_billed_in_euros(client: stripe.StripeClient) -> None:
    price = _multi(client)
    cus = helpers.customer(client)
    sub = client.v1.subscriptions.create(
        {"customer": cus.id, "items": [{"price": price.id, "quantity": 2}], "currency": "eur"}
    )
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert (sub.currency, invoice.currency, invoice.total, invoice.amount_paid) == ("eur", "eur", 2800, 2800)
    # A quantity change is prorated in the subscription's currency too.
    item = sub["items"].data[0]
    client.v1.subscriptions.update(
        sub.id, {"items": [{"id": item.id, "quantity": 3}], "proration_behavior": "always_invoice"}
    )
    latest = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert latest.currency == "eur" and 0 < latest.total <= 1400


def test_a_yen_subscription_has_no_minor_units(client: stripe.StripeClient) -> None:
    price = _multi(client)
    cus = helpers.customer(client)
    sub = client.v1.subscriptions.create(
        {"customer": cus.id, "items": [{"price": price.id}], "currency": "jpy"}
    )
    assert client.v1.invoices.retrieve(sub.latest_invoice).total == 2200


def test_a_currency_the_price_lacks_is_refused(client: stripe.StripeClient) -> None:
    price = _multi(client)
    cus = helpers.customer(client)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.subscriptions.create(
            {"customer": cus.id, "items": [{"price": price.id}], "currency": "gbp"}
        )
    assert caught.value.param == "currency"


def test_checkout_in_euros(client: stripe.StripeClient, sim: Sim) -> None:
    price = _multi(client)
    session = client.v1.checkout.sessions.create(
        {
            "mode": "subscription",
            "currency": "eur",
            "line_items": [{"price": price.id, "quantity": 1}],
            "success_url": "http://127.0.0.1:8000/done",
            "customer_email": "alice@example.com",
        }
    )
    assert (session.currency, session.amount_total) == ("eur", 1400)
    page = Client(sim.app)
    assert "14.00 EUR" in page.get(f"/checkout/{session.id}").get_data(as_text=True)
    page.post(f"/checkout/{session.id}", data={"card_number": "4242424242424242"})
    session = client.v1.checkout.sessions.retrieve(session.id)
    sub = client.v1.subscriptions.retrieve(session.subscription)
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert (sub.currency, invoice.currency, invoice.amount_paid) == ("eur", "eur", 1400)


def test_tiered_prices_have_tiers_in_every_currency(client: stripe.StripeClient) -> None:
    product = client.v1.products.create({"name": "Seats"})
    tiered = client.v1.prices.create(
        {
            "currency": "usd",
            "product": product.id,
            "recurring": {"interval": "month"},
            "billing_scheme": "tiered",
            "tiers_mode": "graduated",
            "tiers": [{"up_to": 3, "unit_amount": 0}, {"up_to": "inf", "unit_amount": 1000}],
            "currency_options": {
                "eur": {"tiers": [{"up_to": 3, "unit_amount": 0}, {"up_to": "inf", "unit_amount": 900}]}
            },
        }
    )
    cus = helpers.customer(client)
    sub = client.v1.subscriptions.create(
        {"customer": cus.id, "items": [{"price": tiered.id, "quantity": 5}], "currency": "eur"}
    )
    # 3 free seats, then 2 x 900.
    assert client.v1.invoices.retrieve(sub.latest_invoice).total == 1800


def test_a_customers_currency_never_changes(client: stripe.StripeClient) -> None:
    price = _multi(client)
    cus = helpers.customer(client)
    client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": price.id}], "currency": "eur"})
    assert client.v1.customers.retrieve(cus.id).currency == "eur"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": price.id}]})
    assert "cannot combine currencies" in str(caught.value.user_message)


def test_a_flat_price_lists_with_tiers_and_currency_options_expanded(client: stripe.StripeClient) -> None:
    price = _multi(client, lookup_key="multi")
    listed = client.v1.prices.list(
        {"lookup_keys": ["multi"], "expand": ["data.tiers", "data.currency_options"]}
    )
    assert listed.data[0].id == price.id
    assert listed.data[0].currency_options["eur"].unit_amount == 1400
