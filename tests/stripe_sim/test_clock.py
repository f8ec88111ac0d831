"""Test clocks: renewals, dunning, trials and scheduled cancellation."""

import stripe
from werkzeug.test import Client

from tests.stripe_sim import helpers
from tests.stripe_sim.conftest import Sim

DAY = helpers.DAY
MAY_1 = helpers.APRIL_1 + 30 * DAY


def _new_events(sim: Sim, seen: int) -> list[str]:
    return sim.events()[seen:]


def test_it_renews_then_dunns_a_subscription_to_cancellation(client: stripe.StripeClient, sim: Sim) -> None:
    clock = helpers.clock(client)
    price = helpers.price(client, amount=2500)
    cus = helpers.customer(client, clock=clock.id)
    sub = client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": price.id}]})
    assert sub.status == "active"

    # A month later: renewal invoice paid with the default card, new period.
    seen = len(sim.events())
    helpers.advance(client, clock.id, MAY_1 + 3600)
    sub = client.v1.subscriptions.retrieve(sub.id, {"expand": ["latest_invoice"]})
    assert sub.status == "active"
    assert sub["items"].data[0].current_period_start == MAY_1
    assert sub.latest_invoice.billing_reason == "subscription_cycle"
    assert sub.latest_invoice.status == "paid"
    assert sub.latest_invoice.amount_paid == 2500
    assert sub.latest_invoice.parent.subscription_details.subscription == sub.id
    assert _new_events(sim, seen) == [
        "test_helpers.test_clock.advancing",
        "customer.subscription.updated",
        "invoice.created",
        "customer.updated",  # next_invoice_sequence, taken by the invoice's number
        "invoice.finalized",
        "payment_intent.created",
        "charge.succeeded",
        "payment_intent.succeeded",
        "invoice.paid",
        "invoice.payment_succeeded",
        "test_helpers.test_clock.ready",
    ]

    # Switch to a card whose charges fail; the next renewal fails and the subscription is past due.
    bad = client.v1.payment_methods.attach("pm_card_chargeCustomerFail", {"customer": cus.id})
    client.v1.customers.update(cus.id, {"invoice_settings": {"default_payment_method": bad.id}})
    seen = len(sim.events())
    june_1 = MAY_1 + 31 * DAY
    helpers.advance(client, clock.id, june_1 + 3600)
    sub = client.v1.subscriptions.retrieve(sub.id, {"expand": ["latest_invoice"]})
    assert sub.status == "past_due"
    failed = sub.latest_invoice
    assert (failed.status, failed.attempt_count) == ("open", 1)
    assert failed.next_payment_attempt == june_1 + 3 * DAY
    assert _new_events(sim, seen) == [
        "test_helpers.test_clock.advancing",
        "customer.subscription.updated",
        "invoice.created",
        "customer.updated",  # next_invoice_sequence, taken by the invoice's number
        "invoice.finalized",
        "payment_intent.created",
        "charge.failed",
        "payment_intent.payment_failed",
        "invoice.payment_failed",
        "customer.subscription.updated",
        "invoice.updated",  # next_payment_attempt: the first retry scheduled
        "test_helpers.test_clock.ready",
    ]

    # Retries on days 3, 8 and 15 all fail; then the subscription is canceled.
    seen = len(sim.events())
    helpers.advance(client, clock.id, june_1 + 20 * DAY)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "canceled"
    assert sub.cancellation_details.reason == "payment_failed"
    assert sub.ended_at == june_1 + 15 * DAY
    invoice = client.v1.invoices.retrieve(failed.id)
    assert (invoice.attempt_count, invoice.next_payment_attempt) == (4, None)
    events = _new_events(sim, seen)
    assert events.count("invoice.payment_failed") == 3
    assert events[-2:] == ["customer.subscription.deleted", "test_helpers.test_clock.ready"]


def test_it_recovers_a_past_due_subscription_when_a_retry_succeeds(
    client: stripe.StripeClient, sim: Sim
) -> None:
    clock = helpers.clock(client)
    price = helpers.price(client, amount=2500)
    cus = helpers.customer(client, clock=clock.id, card="pm_card_chargeCustomerFail")
    sub = client.v1.subscriptions.create(
        {"customer": cus.id, "items": [{"price": price.id}], "trial_period_days": 7}
    )
    assert sub.status == "trialing"
    helpers.advance(client, clock.id, helpers.APRIL_1 + 7 * DAY + 60)
    assert client.v1.subscriptions.retrieve(sub.id).status == "past_due"
    assert "customer.subscription.trial_will_end" in sim.events()
    good = client.v1.payment_methods.attach("pm_card_visa", {"customer": cus.id})
    client.v1.customers.update(cus.id, {"invoice_settings": {"default_payment_method": good.id}})
    helpers.advance(client, clock.id, helpers.APRIL_1 + 11 * DAY)
    sub = client.v1.subscriptions.retrieve(sub.id, {"expand": ["latest_invoice"]})
    assert sub.status == "active"
    assert sub.latest_invoice.status == "paid"
    assert sub.latest_invoice.attempt_count == 2


def test_it_marks_the_subscription_unpaid_when_configured(client: stripe.StripeClient, sim: Sim) -> None:
    sim.store.config.retry_days = [1]
    sim.store.config.after_retries = "unpaid"
    clock = helpers.clock(client)
    price = helpers.price(client, amount=2500)
    cus = helpers.customer(client, clock=clock.id)
    sub = client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": price.id}]})
    bad = client.v1.payment_methods.attach("pm_card_chargeCustomerFail", {"customer": cus.id})
    client.v1.subscriptions.update(sub.id, {"default_payment_method": bad.id})
    helpers.advance(client, clock.id, MAY_1 + 2 * DAY)
    assert client.v1.subscriptions.retrieve(sub.id).status == "unpaid"


def test_it_cancels_at_period_end(client: stripe.StripeClient, sim: Sim) -> None:
    clock = helpers.clock(client)
    price = helpers.price(client)
    cus = helpers.customer(client, clock=clock.id)
    sub = client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": price.id}]})
    sub = client.v1.subscriptions.update(sub.id, {"cancel_at_period_end": True})
    assert (sub.cancel_at_period_end, sub.cancel_at) == (True, MAY_1)
    helpers.advance(client, clock.id, MAY_1 + 10)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert (sub.status, sub.ended_at) == ("canceled", MAY_1)
    assert sim.events()[-2] == "customer.subscription.deleted"
    assert len(client.v1.invoices.list({"customer": cus.id}).data) == 1


def test_it_expires_incomplete_subscriptions_after_23_hours(client: stripe.StripeClient) -> None:
    clock = helpers.clock(client)
    price = helpers.price(client)
    cus = helpers.customer(client, clock=clock.id, card="pm_card_chargeCustomerFail")
    sub = client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": price.id}]})
    assert sub.status == "incomplete"
    helpers.advance(client, clock.id, helpers.APRIL_1 + 24 * 3600)
    sub = client.v1.subscriptions.retrieve(sub.id, {"expand": ["latest_invoice"]})
    assert sub.status == "incomplete_expired"
    assert sub.latest_invoice.status == "void"


def test_it_deletes_a_clock_with_its_customers(client: stripe.StripeClient) -> None:
    clock = helpers.clock(client)
    cus = helpers.customer(client, clock=clock.id)
    assert client.v1.test_helpers.test_clocks.delete(clock.id).deleted is True
    assert client.v1.customers.retrieve(cus.id).get("deleted") is True
    listed = client.v1.test_helpers.test_clocks.list()
    assert listed.data == []


def test_it_moves_wall_time_on_for_objects_on_no_clock(client: stripe.StripeClient, sim: Sim) -> None:
    price = helpers.price(client, amount=900)
    cus = helpers.customer(client)
    on_clock = helpers.customer(client, clock=helpers.clock(client).id)
    sub = client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": price.id}]})
    frozen = client.v1.subscriptions.create({"customer": on_clock.id, "items": [{"price": price.id}]})
    period_end = sub["items"].data[0].current_period_end
    web = Client(sim.app)

    moved = web.post("/_sim/advance", json={"to": period_end + 3600})

    assert moved.json == {"now": period_end + 3600}
    sub = client.v1.subscriptions.retrieve(sub.id, {"expand": ["latest_invoice"]})
    assert sub["items"].data[0].current_period_start == period_end
    assert sub.latest_invoice.billing_reason == "subscription_cycle"
    assert sub.latest_invoice.amount_paid == 900
    assert sub.latest_invoice.created == period_end
    # A customer on a test clock stays in the clock's time.
    assert len(client.v1.invoices.list({"subscription": frozen.id}).data) == 1
    assert client.v1.customers.create({"email": "b@example.com"}).created >= period_end + 3600
    assert web.post("/_sim/advance", json={"to": period_end}).status_code == 400
    assert web.post("/_sim/advance", json={"seconds": -5}).status_code == 400
    assert web.post("/_sim/advance", json={"seconds": "Infinity"}).status_code == 400


def test_the_debug_page_advances_by_days(sim: Sim) -> None:
    web = Client(sim.app)
    before = sim.store.now()
    response = web.post("/_sim/advance", data={"days": "2"})
    assert response.status_code == 303
    assert sim.store.now() - before >= 2 * DAY
    assert "+2.0 days from the real time" in web.get("/_sim/").text
