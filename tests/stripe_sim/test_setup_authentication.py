"""Saving a card that asks for authentication (SetupIntents with Stripe's 3D Secure test cards):
the intent goes `requires_action` until the cardholder answers the step, the card is saved only
if they complete it, and an intent confirmed with a `return_url` redirects back there."""

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import stripe

from tests.stripe_sim import helpers
from tests.stripe_sim.conftest import Sim

ALWAYS = "pm_card_authenticationRequired"  # 4000 0027 6000 3184
ON_SETUP = "pm_card_authenticationRequiredOnSetup"  # 4000 0025 0000 3155
DECLINED_AFTER = "pm_card_authenticationRequiredChargeDeclinedInsufficientFunds"  # 4000 0082 6000 3178
SUCCESS = "https://tally.test/saved?session_id={CHECKOUT_SESSION_ID}"


def _setup(client, cus, card, **extra):
    params = {"customer": cus.id, "payment_method": card, "confirm": True, **extra}
    return client.v1.setup_intents.create(params)


def _answer(sim: Sim, intent_id: str, outcome: str) -> requests.Response:
    return requests.post(
        f"{sim.url}/authenticate/{intent_id}",
        data={"authentication": outcome},
        allow_redirects=False,
        timeout=30,
    )


@pytest.mark.parametrize("card", [ALWAYS, ON_SETUP, DECLINED_AFTER])
def test_saving_an_authentication_card_requires_action(client, sim: Sim, card) -> None:
    cus = helpers.customer(client, card="")
    seti = _setup(client, cus, card)
    assert seti.status == "requires_action"
    assert seti.next_action.type == "use_stripe_sdk"
    assert seti.next_action.use_stripe_sdk["stripe_js"] == f"{sim.url}/authenticate/{seti.id}"
    assert seti.last_setup_error is None
    assert sim.events()[-1] == "setup_intent.requires_action"
    assert client.v1.payment_methods.list({"customer": cus.id, "type": "card"}).data == []
    page = requests.get(f"{sim.url}/authenticate/{seti.id}", timeout=30).text
    assert "Authenticate this card" in page and "Complete authentication" in page


def test_completing_it_saves_the_card_for_off_session_payments(client, sim: Sim) -> None:
    cus = helpers.customer(client, card="")
    seti = _setup(client, cus, ON_SETUP)
    assert _answer(sim, seti.id, "complete").status_code == 200
    seti = client.v1.setup_intents.retrieve(seti.id)
    assert (seti.status, seti.next_action, seti.last_setup_error) == ("succeeded", None, None)
    assert sim.events()[-1] == "setup_intent.succeeded"
    assert client.v1.payment_methods.retrieve(seti.payment_method).customer == cus.id
    # Set up once: later off-session payments with this card go through without the cardholder.
    pi = client.v1.payment_intents.create(
        {
            "amount": 1500,
            "currency": "usd",
            "customer": cus.id,
            "payment_method": seti.payment_method,
            "off_session": True,
            "confirm": True,
        }
    )
    assert pi.status == "succeeded"


def test_a_card_that_always_asks_still_asks_off_session(client, sim: Sim) -> None:
    cus = helpers.customer(client, card="")
    seti = _setup(client, cus, ALWAYS)
    _answer(sim, seti.id, "complete")
    with pytest.raises(stripe.CardError) as caught:
        client.v1.payment_intents.create(
            {
                "amount": 1500,
                "currency": "usd",
                "customer": cus.id,
                "payment_method": client.v1.setup_intents.retrieve(seti.id).payment_method,
                "off_session": True,
                "confirm": True,
            }
        )
    assert caught.value.code == "authentication_required"


def test_failing_it_saves_nothing_and_says_why(client, sim: Sim) -> None:
    cus = helpers.customer(client, card="")
    seti = _setup(client, cus, ON_SETUP)
    assert _answer(sim, seti.id, "fail").status_code == 200
    seti = client.v1.setup_intents.retrieve(seti.id)
    assert seti.status == "requires_payment_method" and seti.next_action is None
    assert seti.last_setup_error.code == "setup_intent_authentication_failure"
    assert seti.last_setup_error.type == "invalid_request_error"
    assert seti.last_setup_error.payment_method.id == seti.payment_method
    assert sim.events()[-1] == "setup_intent.setup_failed"
    assert client.v1.payment_methods.list({"customer": cus.id, "type": "card"}).data == []
    assert _answer(sim, seti.id, "complete").status_code == 400  # nothing waits any more


def test_a_return_url_redirects_to_the_step_and_back(client, sim: Sim) -> None:
    cus = helpers.customer(client, card="")
    seti = _setup(client, cus, ON_SETUP, return_url="https://tally.test/back?x=1")
    assert seti.next_action.type == "redirect_to_url"
    assert seti.next_action.redirect_to_url.url == f"{sim.url}/authenticate/{seti.id}"
    assert seti.next_action.redirect_to_url.return_url == "https://tally.test/back?x=1"
    answered = _answer(sim, seti.id, "complete")
    assert answered.status_code == 303
    back = urlsplit(answered.headers["Location"])
    query = parse_qs(back.query)
    assert (back.netloc, back.path, query["x"]) == ("tally.test", "/back", ["1"])
    assert query["setup_intent"] == [seti.id] and query["redirect_status"] == ["succeeded"]
    assert query["setup_intent_client_secret"] == [seti.client_secret]


def test_a_payment_confirmed_with_a_return_url_redirects_back(client, sim: Sim) -> None:
    cus = helpers.customer(client, card=ALWAYS)
    with pytest.raises(stripe.CardError) as caught:
        client.v1.payment_intents.create(
            {
                "amount": 2000,
                "currency": "usd",
                "customer": cus.id,
                "payment_method": cus.invoice_settings.default_payment_method,
                "off_session": True,
                "confirm": True,
            }
        )
    failed = caught.value.error.payment_intent
    # The customer is brought back on session to confirm the same payment, as Stripe advises.
    pi = client.v1.payment_intents.confirm(
        failed.id,
        {"payment_method": cus.invoice_settings.default_payment_method, "return_url": "https://tally.test/r"},
    )
    assert pi.status == "requires_action" and pi.next_action.type == "redirect_to_url"
    answered = _answer(sim, pi.id, "complete")
    query = parse_qs(urlsplit(answered.headers["Location"]).query)
    assert query["payment_intent"] == [pi.id] and query["redirect_status"] == ["succeeded"]
    assert client.v1.payment_intents.retrieve(pi.id).status == "succeeded"


def _setup_session(client):
    cus = client.v1.customers.create({"email": "bob@example.com"})
    session = client.v1.checkout.sessions.create(
        {"mode": "setup", "customer": cus.id, "success_url": SUCCESS, "currency": "usd"}
    )
    return cus, session


def _post(sim: Sim, session_id: str, **form) -> requests.Response:
    return requests.post(
        f"{sim.url}/checkout/{session_id}",
        data={"email": "bob@example.com", **form},
        allow_redirects=False,
        timeout=30,
    )


def test_checkout_in_setup_mode_asks_for_the_step_and_saves_once_completed(client, sim: Sim) -> None:
    cus, session = _setup_session(client)
    step = _post(sim, session.id, card_number="4000002500003155")
    assert step.status_code == 200 and "Authenticate this card" in step.text
    done = _post(sim, session.id, card_number="4000002500003155", authentication="complete")
    assert done.status_code == 303
    saved = client.v1.checkout.sessions.retrieve(session.id, {"expand": ["setup_intent"]})
    assert saved.status == "complete" and saved.setup_intent.status == "succeeded"
    events = sim.events()
    assert events.index("setup_intent.requires_action") < events.index("setup_intent.succeeded")
    assert client.v1.payment_methods.list({"customer": cus.id, "type": "card"}).data[0].card.last4 == "3155"


def test_checkout_in_setup_mode_saves_nothing_when_the_step_fails(client, sim: Sim) -> None:
    cus, session = _setup_session(client)
    failed = _post(sim, session.id, card_number="4000002500003155", authentication="fail")
    assert failed.status_code == 402 and "failed authentication" in failed.text
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"
    (seti,) = client.v1.setup_intents.list({"customer": cus.id}).data
    assert seti.status == "requires_payment_method"
    assert seti.last_setup_error.code == "setup_intent_authentication_failure"
    assert "setup_intent.setup_failed" in sim.events()
    assert "checkout.session.completed" not in sim.events()
    assert client.v1.payment_methods.list({"customer": cus.id, "type": "card"}).data == []
