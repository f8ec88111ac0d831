"""Payment methods (test tokens, attach, detach, default), payment intents, charges, refunds,
setup intents."""

import pytest
import stripe

from tests.stripe_sim import helpers
from tests.stripe_sim.conftest import Sim


def test_it_turns_test_tokens_into_new_payment_methods(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create({"email": "a@example.com"})
    pm = client.v1.payment_methods.attach("pm_card_visa", {"customer": cus.id})
    assert pm.id.startswith("pm_") and pm.id != "pm_card_visa"
    assert (pm.card.brand, pm.card.last4, pm.customer) == ("visa", "4242", cus.id)
    listed = client.v1.customers.payment_methods.list(cus.id)
    assert [p.id for p in listed.data] == [pm.id]


def test_it_declines_attaching_a_declining_card(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create({"email": "a@example.com"})
    with pytest.raises(stripe.CardError) as caught:
        client.v1.payment_methods.attach("pm_card_chargeDeclined", {"customer": cus.id})
    assert caught.value.http_status == 402
    assert caught.value.code == "card_declined"
    assert caught.value.error.decline_code == "generic_decline"


def test_it_attaches_the_customer_fail_card_but_declines_its_charges(
    client: stripe.StripeClient,
) -> None:
    cus = helpers.customer(client, card="pm_card_chargeCustomerFail")
    pm_id = cus.invoice_settings.default_payment_method
    with pytest.raises(stripe.CardError) as caught:
        client.v1.payment_intents.create(
            {
                "amount": 2000,
                "currency": "usd",
                "customer": cus.id,
                "payment_method": pm_id,
                "confirm": True,
                "off_session": True,
            }
        )
    pi = caught.value.error.payment_intent
    assert pi.status == "requires_payment_method"
    assert pi.last_payment_error.decline_code == "generic_decline"
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.status == "failed" and charge.paid is False


def test_it_detaches_and_clears_the_default(client: stripe.StripeClient, sim: Sim) -> None:
    cus = helpers.customer(client)
    pm_id = cus.invoice_settings.default_payment_method
    client.v1.payment_methods.detach(pm_id)
    assert client.v1.customers.retrieve(cus.id).invoice_settings.default_payment_method is None
    assert "payment_method.detached" in sim.events()
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.update(cus.id, {"invoice_settings": {"default_payment_method": pm_id}})


def test_it_charges_a_saved_card_off_session(client: stripe.StripeClient, sim: Sim) -> None:
    cus = helpers.customer(client)
    pi = client.v1.payment_intents.create(
        {
            "amount": 4200,
            "currency": "usd",
            "customer": cus.id,
            "payment_method": cus.invoice_settings.default_payment_method,
            "confirm": True,
            "off_session": True,
            "metadata": {"purchase": "credits-100"},
            "expand": ["latest_charge"],
        }
    )
    assert pi.status == "succeeded" and pi.amount_received == 4200
    assert pi.latest_charge.paid is True
    assert pi.latest_charge.balance_transaction.startswith("txn_")
    assert client.v1.balance_transactions.retrieve(pi.latest_charge.balance_transaction).net == 4200
    assert sim.events()[-3:] == ["payment_intent.created", "charge.succeeded", "payment_intent.succeeded"]


def test_it_confirms_a_payment_intent_in_a_second_step(client: stripe.StripeClient) -> None:
    cus = helpers.customer(client)
    pi = client.v1.payment_intents.create({"amount": 1000, "currency": "usd", "customer": cus.id})
    assert pi.status == "requires_payment_method"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.confirm(pi.id)
    done = client.v1.payment_intents.confirm(pi.id, {"payment_method": "pm_card_mastercard"})
    assert done.status == "succeeded"
    cancelled = client.v1.payment_intents.create({"amount": 1000, "currency": "usd"})
    assert client.v1.payment_intents.cancel(cancelled.id).status == "canceled"


def test_it_refunds_partially_then_fully(client: stripe.StripeClient, sim: Sim) -> None:
    cus = helpers.customer(client)
    pi = client.v1.payment_intents.create(
        {
            "amount": 5000,
            "currency": "usd",
            "customer": cus.id,
            "payment_method": cus.invoice_settings.default_payment_method,
            "confirm": True,
        }
    )
    first = client.v1.refunds.create({"payment_intent": pi.id, "amount": 2000})
    assert first.status == "succeeded" and first.charge == pi.latest_charge
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (2000, False)
    client.v1.refunds.create({"charge": charge.id})
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (5000, True)
    assert len(charge.refunds.data) == 2
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.refunds.create({"charge": charge.id, "amount": 1})
    assert sim.events().count("charge.refunded") == 2


def test_it_saves_a_card_with_a_setup_intent(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create({"email": "a@example.com"})
    seti = client.v1.setup_intents.create(
        {"customer": cus.id, "payment_method": "pm_card_visa", "confirm": True}
    )
    assert seti.status == "succeeded"
    assert client.v1.payment_methods.retrieve(seti.payment_method).customer == cus.id
    with pytest.raises(stripe.CardError):
        client.v1.setup_intents.create(
            {"customer": cus.id, "payment_method": "pm_card_chargeDeclined", "confirm": True}
        )
