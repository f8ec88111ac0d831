"""Checkout sessions and the billing portal, including their hosted pages."""

import pytest
import stripe
from werkzeug.test import Client

from tests.stripe_sim import helpers
from tests.stripe_sim.conftest import Receiver, Sim

SUCCESS = "http://127.0.0.1:8000/billing/success?session_id={CHECKOUT_SESSION_ID}"


def _page(sim: Sim) -> Client:
    return Client(sim.app)


def _session(client: stripe.StripeClient, **extra) -> stripe.checkout.Session:
    price = helpers.price(client, amount=1500)
    params = {
        "mode": "subscription",
        "line_items": [{"price": price.id, "quantity": 3}],
        "success_url": SUCCESS,
        "cancel_url": "http://127.0.0.1:8000/pricing",
        "client_reference_id": "org_42",
        "metadata": {"org": "42"},
        "customer_email": "alice@example.com",
        **extra,
    }
    return client.v1.checkout.sessions.create(params)  # type: ignore[arg-type]


def test_it_creates_a_session_with_a_hosted_url(client: stripe.StripeClient, sim: Sim) -> None:
    session = _session(client)
    assert session.id.startswith("cs_test_")
    assert session.url == f"{sim.url}/checkout/{session.id}"
    assert (session.status, session.payment_status) == ("open", "unpaid")
    assert session.amount_total == 4500
    items = client.v1.checkout.sessions.line_items.list(session.id)
    assert [(i.quantity, i.amount_total) for i in items.data] == [(3, 4500)]
    expanded = client.v1.checkout.sessions.retrieve(session.id, {"expand": ["line_items"]})
    assert expanded.line_items.data[0].price.unit_amount == 1500


def test_it_shows_line_items_and_total_on_the_hosted_page(client: stripe.StripeClient, sim: Sim) -> None:
    session = _session(client)
    page = _page(sim).get(f"/checkout/{session.id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Pro" in html and "$45.00" in html


def test_it_shows_a_decline_and_creates_nothing(client: stripe.StripeClient, sim: Sim) -> None:
    session = _session(client)
    page = _page(sim).post(
        f"/checkout/{session.id}",
        data={"email": "alice@example.com", "card_number": "4000 0000 0000 0002"},
    )
    assert page.status_code == 402
    assert "Your card was declined." in page.get_data(as_text=True)
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"
    assert client.v1.customers.list().data == []


def test_it_completes_a_subscription_checkout(client: stripe.StripeClient, sim: Sim) -> None:
    session = _session(client, subscription_data={"metadata": {"plan": "pro"}})
    before = len(sim.events())
    page = _page(sim).post(
        f"/checkout/{session.id}",
        data={"email": "alice@example.com", "card_number": "4242 4242 4242 4242"},
    )
    assert page.status_code == 303
    assert page.headers["Location"] == SUCCESS.replace("{CHECKOUT_SESSION_ID}", session.id)
    done = client.v1.checkout.sessions.retrieve(session.id, {"expand": ["subscription", "invoice"]})
    assert (done.status, done.payment_status) == ("complete", "paid")
    assert done.client_reference_id == "org_42"
    assert done.subscription.status == "active"
    assert done.subscription.metadata["plan"] == "pro"
    assert done.subscription["items"].data[0].quantity == 3
    assert done.invoice.amount_paid == 4500
    assert done.customer_details.email == "alice@example.com"
    assert sim.events()[before:] == [
        "customer.created",
        "payment_method.attached",
        "customer.subscription.created",
        "invoice.created",
        "customer.updated",  # next_invoice_sequence, taken by the invoice's number
        "invoice.finalized",
        "payment_intent.created",
        "charge.succeeded",
        "payment_intent.succeeded",
        "invoice.paid",
        "invoice.payment_succeeded",
        "customer.subscription.updated",
        "checkout.session.completed",
    ]
    again = _page(sim).get(f"/checkout/{session.id}")
    assert again.status_code == 410


def test_it_completes_a_trial_without_charging(client: stripe.StripeClient, sim: Sim) -> None:
    session = _session(client, subscription_data={"trial_period_days": 14})
    assert session.amount_total == 0
    _page(sim).post(f"/checkout/{session.id}", data={"card_number": "4242424242424242"})
    done = client.v1.checkout.sessions.retrieve(session.id, {"expand": ["subscription"]})
    assert done.payment_status == "no_payment_required"
    assert done.subscription.status == "trialing"
    assert done.subscription.trial_end - done.subscription.trial_start == 14 * helpers.DAY


def test_it_completes_payment_and_setup_modes(client: stripe.StripeClient, sim: Sim) -> None:
    credits = helpers.price(client, amount=2000, interval=None, name="100 credits")
    pay = client.v1.checkout.sessions.create(
        {
            "mode": "payment",
            "line_items": [{"price": credits.id, "quantity": 2}],
            "success_url": SUCCESS,
            "payment_intent_data": {"metadata": {"package": "100"}},
        }
    )
    _page(sim).post(f"/checkout/{pay.id}", data={"card_number": "4242424242424242"})
    paid = client.v1.checkout.sessions.retrieve(pay.id, {"expand": ["payment_intent"]})
    assert paid.payment_intent.amount_received == 4000
    assert paid.payment_intent.metadata["package"] == "100"
    cus = client.v1.customers.create({"email": "bob@example.com"})
    setup = client.v1.checkout.sessions.create(
        {"mode": "setup", "customer": cus.id, "success_url": SUCCESS, "currency": "usd"}
    )
    _page(sim).post(f"/checkout/{setup.id}", data={"card_number": "5555555555554444"})
    saved = client.v1.checkout.sessions.retrieve(setup.id, {"expand": ["setup_intent"]})
    assert saved.setup_intent.status == "succeeded"
    assert client.v1.payment_methods.list({"customer": cus.id}).data[0].card.last4 == "4444"


def test_it_rejects_mismatched_modes_and_expires_sessions(client: stripe.StripeClient) -> None:
    one_time = helpers.price(client, interval=None)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.create(
            {"mode": "subscription", "line_items": [{"price": one_time.id}], "success_url": SUCCESS}
        )
    session = _session(client)
    assert client.v1.checkout.sessions.expire(session.id).status == "expired"


def test_it_lets_the_portal_cancel_resume_switch_and_change_card(
    client: stripe.StripeClient, sim: Sim
) -> None:
    basic = helpers.price(client, amount=1000, name="Basic")
    pro = helpers.price(client, amount=3000, name="Pro")
    cus = helpers.customer(client)
    sub = client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": basic.id}]})
    portal = client.v1.billing_portal.sessions.create(
        {"customer": cus.id, "return_url": "http://127.0.0.1:8000/billing"}
    )
    assert portal.url == f"{sim.url}/portal/{portal.id}"
    browser = _page(sim)
    html = browser.get(f"/portal/{portal.id}").get_data(as_text=True)
    assert "Basic" in html and "http://127.0.0.1:8000/billing" in html

    browser.post(f"/portal/{portal.id}", data={"action": "cancel", "subscription": sub.id})
    assert client.v1.subscriptions.retrieve(sub.id).cancel_at_period_end is True
    browser.post(f"/portal/{portal.id}", data={"action": "resume", "subscription": sub.id})
    assert client.v1.subscriptions.retrieve(sub.id).cancel_at_period_end is False

    browser.post(f"/portal/{portal.id}", data={"action": "switch", "subscription": sub.id, "price": pro.id})
    switched = client.v1.subscriptions.retrieve(sub.id)
    assert switched["items"].data[0].price.id == pro.id

    page = browser.post(f"/portal/{portal.id}", data={"action": "card", "card_number": "5555555555554444"})
    assert "ending 4444" in page.get_data(as_text=True)
    customer = client.v1.customers.retrieve(cus.id, {"expand": ["invoice_settings.default_payment_method"]})
    assert customer.invoice_settings.default_payment_method.card.last4 == "4444"


def test_it_expires_a_session_when_its_clock_passes_expires_at(client: stripe.StripeClient, sim: Sim) -> None:
    clock = helpers.clock(client)
    cus = helpers.customer(client, clock=clock.id)
    session = _session(client, customer=cus.id, customer_email=None)
    assert session.expires_at == helpers.APRIL_1 + helpers.DAY

    helpers.advance(client, clock.id, session.expires_at - 1)
    assert "checkout.session.expired" not in sim.events()
    helpers.advance(client, clock.id, session.expires_at + 3600)

    # Expired by the advance itself, at its time, before anyone looks at the session.
    assert sim.events()[-2:] == ["checkout.session.expired", "test_helpers.test_clock.ready"]
    expired = client.v1.checkout.sessions.retrieve(session.id)
    assert (expired.status, expired.url) == ("expired", None)
    assert _page(sim).get(f"/checkout/{session.id}").status_code == 410
    assert sim.events().count("checkout.session.expired") == 1


def test_it_expires_a_session_on_no_clock_as_wall_time_passes(client: stripe.StripeClient, sim: Sim) -> None:
    session = _session(client)
    Client(sim.app).post("/_sim/advance", json={"to": session.expires_at})
    assert sim.events()[-1] == "checkout.session.expired"
    assert client.v1.checkout.sessions.retrieve(session.id).status == "expired"


def test_it_expires_a_session_past_its_time_when_looked_at(
    client: stripe.StripeClient, sim: Sim, receiver: Receiver
) -> None:
    client.v1.webhook_endpoints.create({"url": receiver.url, "enabled_events": ["checkout.session.expired"]})
    session = _session(client)
    with sim.store.lock:
        sim.store.offset = session.expires_at - sim.store.now()  # a day went by, nothing ran

    assert _page(sim).get(f"/checkout/{session.id}").status_code == 410
    assert receiver.types() == ["checkout.session.expired"]
    listed = client.v1.checkout.sessions.list({"status": "expired"}).data
    assert [s.id for s in listed] == [session.id]
    assert sim.events().count("checkout.session.expired") == 1
