"""3D Secure with Stripe's authentication test cards: payment intents that require action, invoices
left open with `invoice.payment_action_required`, and the hosted step that completes or fails it."""

import pytest
import requests
import stripe

from tests.stripe_sim import helpers
from tests.stripe_sim.conftest import Sim

ALWAYS = "pm_card_authenticationRequired"  # 4000 0027 6000 3184
ON_SETUP = "pm_card_authenticationRequiredOnSetup"  # 4000 0025 0000 3155
DECLINED_AFTER = "pm_card_authenticationRequiredChargeDeclinedInsufficientFunds"  # 4000 0082 6000 3178


def _intent(client, cus, **extra):
    params = {
        "amount": 2000,
        "currency": "usd",
        "customer": cus.id,
        "payment_method": cus.invoice_settings.default_payment_method,
        "confirm": True,
        **extra,
    }
    return client.v1.payment_intents.create(params)


def _answer(sim: Sim, pi_id: str, outcome: str) -> requests.Response:
    return requests.post(f"{sim.url}/authenticate/{pi_id}", data={"authentication": outcome}, timeout=30)


@pytest.mark.parametrize("card", [ALWAYS, ON_SETUP, DECLINED_AFTER])
def test_it_leaves_an_on_session_payment_requiring_action(client, sim: Sim, card) -> None:
    cus = helpers.customer(client, card=card)
    pi = _intent(client, cus)
    assert pi.status == "requires_action"
    assert pi.next_action.type == "use_stripe_sdk"
    assert pi.next_action.use_stripe_sdk["stripe_js"] == f"{sim.url}/authenticate/{pi.id}"
    assert pi.latest_charge is None
    assert sim.events()[-1] == "payment_intent.requires_action"


def test_it_fails_an_off_session_payment_that_needs_authentication(client) -> None:
    cus = helpers.customer(client, card=ALWAYS)
    with pytest.raises(stripe.CardError) as caught:
        _intent(client, cus, off_session=True)
    assert caught.value.code == "authentication_required"
    pi = caught.value.error.payment_intent
    assert pi.status == "requires_payment_method"
    assert pi.last_payment_error.code == "authentication_required"


def test_completing_authentication_charges_the_card(client, sim: Sim) -> None:
    cus = helpers.customer(client, card=ALWAYS)
    pi = _intent(client, cus)
    assert _answer(sim, pi.id, "complete").status_code == 200
    pi = client.v1.payment_intents.retrieve(pi.id)
    assert (pi.status, pi.amount_received, pi.next_action) == ("succeeded", 2000, None)
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.payment_method_details.card.three_d_secure.result == "authenticated"
    assert sim.events()[-1] == "payment_intent.succeeded"
    # The page is spent: the intent needs nothing more.
    assert _answer(sim, pi.id, "complete").status_code == 400


def test_failing_authentication_asks_for_another_payment_method(client, sim: Sim) -> None:
    cus = helpers.customer(client, card=ALWAYS)
    pi = _intent(client, cus)
    assert _answer(sim, pi.id, "fail").status_code == 200
    pi = client.v1.payment_intents.retrieve(pi.id)
    assert pi.status == "requires_payment_method"
    assert pi.last_payment_error.code == "payment_intent_authentication_failure"
    assert pi.latest_charge is None
    assert sim.events()[-1] == "payment_intent.payment_failed"


def test_the_3178_card_is_declined_after_authenticating(client, sim: Sim) -> None:
    cus = helpers.customer(client, card=DECLINED_AFTER)
    pi = _intent(client, cus)
    _answer(sim, pi.id, "complete")
    pi = client.v1.payment_intents.retrieve(pi.id)
    assert pi.status == "requires_payment_method"
    assert pi.last_payment_error.decline_code == "insufficient_funds"


def test_the_3155_card_saved_with_an_authenticated_payment_pays_off_session(client, sim: Sim) -> None:
    cus = helpers.customer(client, card=ON_SETUP)
    pi = _intent(client, cus, setup_future_usage="off_session")
    _answer(sim, pi.id, "complete")
    later = _intent(client, cus, off_session=True)
    assert later.status == "succeeded"
    # The 3184 card asks every time, also once authenticated.
    other = helpers.customer(client, card=ALWAYS)
    _answer(sim, _intent(client, other, setup_future_usage="off_session").id, "complete")
    with pytest.raises(stripe.CardError):
        _intent(client, other, off_session=True)


def _subscription(client, card, clock=None):
    price = helpers.price(client)
    cus = helpers.customer(client, card=card, clock=clock)
    sub = client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": price.id}]})
    return cus, sub


def test_a_first_invoice_that_needs_authentication_leaves_the_subscription_incomplete(
    client, sim: Sim
) -> None:
    _cus, sub = _subscription(client, ALWAYS)
    assert sub.status == "incomplete"
    invoice = client.v1.invoices.retrieve(
        sub.latest_invoice, {"expand": ["payments.data.payment.payment_intent"]}
    )
    assert invoice.status == "open"
    assert invoice.payments.data[0].payment.payment_intent.status == "requires_action"
    assert "invoice.payment_action_required" in sim.events()

    page = requests.get(invoice.hosted_invoice_url, timeout=30)
    assert "Authenticate this payment" in page.text
    done = requests.post(invoice.hosted_invoice_url, data={"authentication": "complete"}, timeout=30)
    assert done.status_code == 200 and "Paid" in done.text
    assert client.v1.invoices.retrieve(invoice.id).status == "paid"
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_a_renewal_that_needs_authentication_is_past_due_until_authenticated(client, sim: Sim) -> None:
    clock = helpers.clock(client)
    cus, sub = _subscription(client, "pm_card_visa", clock=clock.id)
    assert sub.status == "active"
    card = client.v1.payment_methods.attach(ALWAYS, {"customer": cus.id})
    client.v1.customers.update(cus.id, {"invoice_settings": {"default_payment_method": card.id}})
    helpers.advance(client, clock.id, helpers.APRIL_1 + 30 * helpers.DAY + 3600)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "past_due"
    renewal = client.v1.invoices.retrieve(sub.latest_invoice)
    assert renewal.status == "open"
    types = sim.events()
    assert types.index("invoice.payment_failed") < types.index("invoice.payment_action_required")

    # Failing the step keeps it open; the API cannot pay it off session either.
    failed = requests.post(renewal.hosted_invoice_url, data={"authentication": "fail"}, timeout=30)
    assert failed.status_code == 402 and "failed authentication" in failed.text
    assert client.v1.invoices.retrieve(renewal.id).status == "open"
    with pytest.raises(stripe.CardError) as caught:
        client.v1.invoices.pay(renewal.id)
    assert caught.value.code == "invoice_payment_intent_requires_action"

    done = requests.post(renewal.hosted_invoice_url, data={"authentication": "complete"}, timeout=30)
    assert done.status_code == 200
    assert client.v1.invoices.retrieve(renewal.id).status == "paid"
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_checkout_asks_for_authentication_before_it_pays(client, sim: Sim) -> None:
    price = helpers.price(client)
    session = client.v1.checkout.sessions.create(
        {
            "mode": "subscription",
            "line_items": [{"price": price.id, "quantity": 1}],
            "success_url": "https://example.com/ok",
        }
    )
    form = {"card_number": "4000 0027 6000 3184", "email": "a@example.com"}
    step = requests.post(session.url, data=form, allow_redirects=False, timeout=30)
    assert step.status_code == 200 and "Authenticate this payment" in step.text
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"

    failed = requests.post(
        session.url, data={**form, "authentication": "fail"}, allow_redirects=False, timeout=30
    )
    assert failed.status_code == 402
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"

    paid = requests.post(
        session.url, data={**form, "authentication": "complete"}, allow_redirects=False, timeout=30
    )
    assert paid.status_code == 303
    done = client.v1.checkout.sessions.retrieve(session.id)
    assert (done.status, done.payment_status) == ("complete", "paid")
    assert client.v1.subscriptions.retrieve(done.subscription).status == "active"
