"""SEPA Direct Debit in Checkout: a delayed-notification method. The session completes unpaid,
the payment is processing, and the bank answers later (Stripe's test IBANs say how)."""

import pytest
import stripe
from werkzeug.test import Client

from tests.stripe_sim import helpers
from tests.stripe_sim.conftest import Sim

SUCCESS = "http://127.0.0.1:8000/done?session_id={CHECKOUT_SESSION_ID}"
PAYS, FAILS, PAYS_LATER = "DE89370400440532013000", "DE62370400440532013001", "DE08370400440532013003"


def _euro_price(client, *, interval=None):
    return helpers.price(client, amount=2500, interval=interval, currency="eur")


def _payment_session(client, price, **extra):
    return client.v1.checkout.sessions.create(
        {
            "mode": "payment",
            "line_items": [{"price": price.id, "quantity": 1}],
            "success_url": SUCCESS,
            "customer_email": "alice@example.com",
            **extra,
        }
    )


def _pay(sim: Sim, session, iban: str) -> None:
    response = Client(sim.app).post(f"/checkout/{session.id}", data={"iban": iban, "email": "a@example.com"})
    assert response.status_code == 303, response.text


def test_it_offers_sepa_debit_for_euros_only(client: stripe.StripeClient) -> None:
    assert _payment_session(client, _euro_price(client)).payment_method_types == ["card", "sepa_debit"]
    dollars = helpers.price(client, interval=None)
    assert _payment_session(client, dollars).payment_method_types == ["card"]
    with pytest.raises(stripe.InvalidRequestError, match="sepa_debit supports: eur"):
        _payment_session(client, dollars, payment_method_types=["card", "sepa_debit"])


def test_a_debit_completes_the_session_unpaid_then_succeeds(client: stripe.StripeClient, sim: Sim) -> None:
    session = _payment_session(client, _euro_price(client))
    _pay(sim, session, PAYS)

    done = client.v1.checkout.sessions.retrieve(session.id, {"expand": ["payment_intent"]})
    assert (done.status, done.payment_status) == ("complete", "unpaid")
    assert done.payment_intent.status == "processing"
    assert sim.events()[-1] == "checkout.session.completed"

    settled = Client(sim.app).post("/_sim/settle").json
    assert settled == [{"id": done.payment_intent.id, "status": "succeeded"}]

    paid = client.v1.checkout.sessions.retrieve(session.id, {"expand": ["payment_intent"]})
    assert paid.payment_status == "paid"
    assert paid.payment_intent.amount_received == 2500
    charge = client.v1.charges.retrieve(paid.payment_intent.latest_charge)
    assert (charge.status, charge.payment_method_details.type) == ("succeeded", "sepa_debit")
    assert sim.events()[-3:] == [
        "charge.succeeded",
        "payment_intent.succeeded",
        "checkout.session.async_payment_succeeded",
    ]
    assert Client(sim.app).post("/_sim/settle").json == []  # nothing left to settle


def test_a_failed_debit_leaves_the_session_unpaid_and_says_why(client: stripe.StripeClient, sim: Sim) -> None:
    session = _payment_session(client, _euro_price(client))
    _pay(sim, session, FAILS)
    Client(sim.app).post("/_sim/settle")

    failed = client.v1.checkout.sessions.retrieve(session.id, {"expand": ["payment_intent"]})
    assert (failed.status, failed.payment_status) == ("complete", "unpaid")
    assert failed.payment_intent.status == "requires_payment_method"
    assert failed.payment_intent.last_payment_error.code == "insufficient_funds"
    assert "insufficient funds" in failed.payment_intent.last_payment_error.message
    assert sim.events()[-3:] == [
        "charge.failed",
        "payment_intent.payment_failed",
        "checkout.session.async_payment_failed",
    ]


def test_a_test_clock_settles_a_delayed_debit_when_its_time_comes(
    client: stripe.StripeClient, sim: Sim
) -> None:
    clock = helpers.clock(client)
    cus = helpers.customer(client, card="", clock=clock.id)
    session = _payment_session(client, _euro_price(client), customer=cus.id, customer_email=None)
    _pay(sim, session, PAYS_LATER)

    helpers.advance(client, clock.id, helpers.APRIL_1 + 60)
    assert client.v1.checkout.sessions.retrieve(session.id).payment_status == "unpaid"
    helpers.advance(client, clock.id, helpers.APRIL_1 + 181)
    assert client.v1.checkout.sessions.retrieve(session.id).payment_status == "paid"


def test_a_subscription_paid_by_debit_is_incomplete_until_the_bank_answers(
    client: stripe.StripeClient, sim: Sim
) -> None:
    price = _euro_price(client, interval="month")
    paying = client.v1.checkout.sessions.create(
        {"mode": "subscription", "line_items": [{"price": price.id, "quantity": 1}], "success_url": SUCCESS}
    )
    failing = client.v1.checkout.sessions.create(
        {"mode": "subscription", "line_items": [{"price": price.id, "quantity": 1}], "success_url": SUCCESS}
    )
    _pay(sim, paying, PAYS)
    _pay(sim, failing, FAILS)
    for session in (paying, failing):
        done = client.v1.checkout.sessions.retrieve(session.id, {"expand": ["subscription"]})
        assert (done.payment_status, done.subscription.status) == ("unpaid", "incomplete")

    Client(sim.app).post("/_sim/settle")

    paid = client.v1.checkout.sessions.retrieve(paying.id, {"expand": ["subscription", "invoice"]})
    assert (paid.payment_status, paid.subscription.status, paid.invoice.status) == ("paid", "active", "paid")
    failed = client.v1.checkout.sessions.retrieve(failing.id, {"expand": ["subscription", "invoice"]})
    assert (failed.payment_status, failed.subscription.status) == ("unpaid", "incomplete")
    assert failed.invoice.status == "open"
    assert "checkout.session.async_payment_failed" in sim.events()
    assert "invoice.payment_failed" in sim.events()


def test_it_refuses_an_unknown_iban(client: stripe.StripeClient, sim: Sim) -> None:
    session = _payment_session(client, _euro_price(client))
    response = Client(sim.app).post(
        f"/checkout/{session.id}", data={"iban": "DE00123", "email": "a@example.com"}
    )
    assert response.status_code == 402 and "IBAN you provided is invalid" in response.text
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"


def test_the_debug_page_lets_the_bank_answer_and_lists_armed_faults(
    client: stripe.StripeClient, sim: Sim
) -> None:
    session = _payment_session(client, _euro_price(client))
    _pay(sim, session, PAYS)
    web = Client(sim.app)
    web.post("/_sim/faults", json={"path": "/v1/billing/meter_events", "status": 500, "count": 2})
    page = web.get("/_sim/").text
    assert "1 bank debit(s) processing" in page and "/v1/billing/meter_events: 500 for 2 more" in page

    assert web.post("/_sim/settle", data={"back": "1"}).status_code == 303
    assert client.v1.checkout.sessions.retrieve(session.id).payment_status == "paid"
    assert "bank debit(s) processing" not in web.get("/_sim/").text
