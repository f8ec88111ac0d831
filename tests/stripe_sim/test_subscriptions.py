"""Subscriptions, items, invoices, invoice items and previews."""

from typing import Any

import pytest
import stripe
from werkzeug.test import Client

from tests.stripe_sim import helpers
from tests.stripe_sim.conftest import Sim

DAY = helpers.DAY


def _sub(client: stripe.StripeClient, clock_id: str | None = None, **extra):
    price = helpers.price(client, amount=1000)
    cus = helpers.customer(client, clock=clock_id)
    params = {"customer": cus.id, "items": [{"price": price.id, "quantity": 5}], **extra}
    return client.v1.subscriptions.create(params), price, cus  # type: ignore[arg-type]


def test_it_puts_periods_on_items_and_the_subscription_under_invoice_parent(
    client: stripe.StripeClient,
) -> None:
    sub, price, cus = _sub(client, metadata={"org": "42"})
    item = sub["items"].data[0]
    assert item.current_period_end > item.current_period_start
    assert "current_period_end" not in sub
    assert item.plan.id == price.id
    invoice = client.v1.invoices.retrieve(sub.latest_invoice)
    assert invoice.parent.subscription_details.subscription == sub.id
    assert invoice.billing_reason == "subscription_create"
    line = invoice.lines.data[0]
    assert line.pricing.price_details.price == price.id
    assert line.parent.subscription_item_details.subscription_item == item.id
    assert (line.quantity, line.amount) == (5, 5000)
    assert sub.metadata["org"] == "42"
    found = client.v1.subscriptions.search({"query": "metadata['org']:'42'"})
    assert [s.id for s in found.data] == [sub.id]


def test_it_requires_a_payment_method_unless_default_incomplete(
    client: stripe.StripeClient,
) -> None:
    price = helpers.price(client)
    cus = helpers.customer(client, card="")
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": price.id}]})
    sub = client.v1.subscriptions.create(
        {
            "customer": cus.id,
            "items": [{"price": price.id}],
            "payment_behavior": "default_incomplete",
        }
    )
    assert sub.status == "incomplete"
    pm = client.v1.payment_methods.attach("pm_card_visa", {"customer": cus.id})
    paid = client.v1.invoices.pay(sub.latest_invoice, {"payment_method": pm.id})
    assert paid.status == "paid"
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_it_errors_when_incomplete_is_not_allowed(client: stripe.StripeClient, sim: Sim) -> None:
    price = helpers.price(client)
    cus = helpers.customer(client, card="pm_card_chargeCustomerFail")
    with pytest.raises(stripe.CardError):
        client.v1.subscriptions.create(
            {
                "customer": cus.id,
                "items": [{"price": price.id}],
                "payment_behavior": "error_if_incomplete",
            }
        )
    assert sim.store.all("subscription") == []


def test_it_swaps_prices_with_prorations_or_invoices_at_once(client: stripe.StripeClient) -> None:
    clock = helpers.clock(client)
    sub, _price, cus = _sub(client, clock.id)
    pro = helpers.price(client, amount=3000, name="Team")
    helpers.advance(client, clock.id, helpers.APRIL_1 + 10 * DAY)
    item = sub["items"].data[0]
    updated = client.v1.subscriptions.update(
        sub.id,
        {
            "items": [{"id": item.id, "price": pro.id}],
            "proration_behavior": "always_invoice",
            "expand": ["latest_invoice"],
        },
    )
    invoice = updated.latest_invoice
    assert invoice.billing_reason == "subscription_update"
    # 20 of 30 days left: credit 2/3 of $50, charge 2/3 of $150
    assert [line.amount for line in invoice.lines.data] == [-3333, 10000]
    assert invoice.amount_paid == 6667
    assert updated["items"].data[0].price.id == pro.id
    client.v1.subscriptions.update(
        sub.id, {"items": [{"id": item.id, "quantity": 1}], "proration_behavior": "none"}
    )
    assert client.v1.invoice_items.list({"customer": cus.id, "pending": True}).data == []


def test_it_adds_and_removes_items(client: stripe.StripeClient) -> None:
    sub, _price, _cus = _sub(client)
    seats = helpers.price(client, amount=800, name="Seats")
    added = client.v1.subscription_items.create(
        {"subscription": sub.id, "price": seats.id, "quantity": 2, "proration_behavior": "none"}
    )
    assert added.subscription == sub.id
    listed = client.v1.subscription_items.list({"subscription": sub.id})
    assert len(listed.data) == 2
    client.v1.subscription_items.update(added.id, {"quantity": 4, "proration_behavior": "none"})
    assert client.v1.subscription_items.retrieve(added.id).quantity == 4
    assert client.v1.subscription_items.delete(added.id, {"proration_behavior": "none"}).deleted
    assert len(client.v1.subscriptions.retrieve(sub.id)["items"].data) == 1
    yearly = helpers.price(client, interval="year")
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscription_items.create({"subscription": sub.id, "price": yearly.id})


def test_it_cancels_immediately(client: stripe.StripeClient, sim: Sim) -> None:
    sub, _price, _cus = _sub(client)
    canceled = client.v1.subscriptions.cancel(sub.id)
    assert canceled.status == "canceled" and canceled.ended_at is not None
    assert sim.events()[-1] == "customer.subscription.deleted"
    assert client.v1.subscriptions.list().data == []
    assert len(client.v1.subscriptions.list({"status": "all"}).data) == 1


def test_it_adds_one_time_items_to_the_next_invoice(client: stripe.StripeClient) -> None:
    clock = helpers.clock(client)
    sub, _price, cus = _sub(client, clock.id)
    setup_fee = helpers.price(client, amount=9900, interval=None, name="Onboarding")
    item = client.v1.invoice_items.create({"customer": cus.id, "pricing": {"price": setup_fee.id}})
    assert item.invoice is None and item.amount == 9900
    preview = client.v1.invoices.create_preview({"customer": cus.id, "subscription": sub.id})
    assert preview.amount_due == 5000 + 9900
    helpers.advance(client, clock.id, helpers.APRIL_1 + 30 * DAY + 10)
    assert client.v1.invoice_items.retrieve(item.id).invoice is not None


def test_it_previews_a_new_subscription_and_a_quantity_change(client: stripe.StripeClient, sim: Sim) -> None:
    price = helpers.price(client, amount=1500)
    cus = helpers.customer(client)
    preview = client.v1.invoices.create_preview(
        {"customer": cus.id, "subscription_details": {"items": [{"price": price.id, "quantity": 4}]}}
    )
    assert preview.amount_due == 6000
    assert sim.store.all("subscription") == []
    sub = client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": price.id, "quantity": 4}]})
    item = sub["items"].data[0]
    change = client.v1.invoices.create_preview(
        {
            "customer": cus.id,
            "subscription": sub.id,
            "subscription_details": {
                "items": [{"id": item.id, "quantity": 6}],
                "proration_behavior": "always_invoice",
                "proration_date": item.current_period_start,
            },
        }
    )
    assert change.amount_due == 3000  # two more seats for the whole period
    assert client.v1.subscriptions.retrieve(sub.id)["items"].data[0].quantity == 4


def test_it_runs_a_manual_invoice_lifecycle(client: stripe.StripeClient, sim: Sim) -> None:
    cus = helpers.customer(client)
    client.v1.invoice_items.create(
        {"customer": cus.id, "amount": 1234, "currency": "usd", "description": "Consulting"}
    )
    draft = client.v1.invoices.create({"customer": cus.id, "pending_invoice_items_behavior": "include"})
    assert (draft.status, draft.amount_due) == ("draft", 1234)
    opened = client.v1.invoices.finalize_invoice(draft.id, {"auto_advance": False})
    assert opened.status == "open" and opened.number
    paid = client.v1.invoices.pay(draft.id, {"expand": ["payments"]})
    assert paid.status == "paid"
    assert paid.payments.data[0].payment.payment_intent.startswith("pi_")
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.pay(draft.id)
    other = client.v1.invoices.create({"customer": cus.id})
    client.v1.invoice_items.create(
        {"customer": cus.id, "amount": 500, "currency": "usd", "invoice": other.id}
    )
    client.v1.invoices.finalize_invoice(other.id)
    assert client.v1.invoices.void_invoice(other.id).status == "void"
    assert [i.status for i in client.v1.invoices.list({"customer": cus.id}).data] == [
        "void",
        "paid",
    ]


def test_it_fails_invoice_pay_with_a_card_error(client: stripe.StripeClient) -> None:
    cus = helpers.customer(client, card="pm_card_chargeCustomerFail")
    client.v1.invoice_items.create({"customer": cus.id, "amount": 700, "currency": "usd"})
    invoice = client.v1.invoices.create({"customer": cus.id, "pending_invoice_items_behavior": "include"})
    with pytest.raises(stripe.CardError):
        client.v1.invoices.pay(invoice.id)
    again = client.v1.invoices.retrieve(invoice.id)
    assert (again.status, again.attempt_count) == ("open", 1)


def test_it_manages_catalog_objects(client: stripe.StripeClient, sim: Sim) -> None:
    product = client.v1.products.create(
        {"name": "Pro", "metadata": {"tally_plan": "pro"}, "id": "prod_tally_pro"}
    )
    assert product.id == "prod_tally_pro"
    price = client.v1.prices.create(
        {
            "currency": "usd",
            "product": product.id,
            "unit_amount": 2900,
            "recurring": {"interval": "month"},
            "lookup_key": "pro_monthly",
        }
    )
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.prices.create(
            {"currency": "usd", "product": product.id, "unit_amount": 1, "lookup_key": "pro_monthly"}
        )
    moved = client.v1.prices.create(
        {
            "currency": "usd",
            "product": product.id,
            "unit_amount": 3900,
            "recurring": {"interval": "month"},
            "lookup_key": "pro_monthly",
            "transfer_lookup_key": True,
        }
    )
    found = client.v1.prices.list({"lookup_keys": ["pro_monthly"]}).data
    assert [p.id for p in found] == [moved.id]
    assert client.v1.prices.retrieve(price.id).lookup_key is None
    client.v1.prices.update(price.id, {"active": False})
    assert [p.id for p in client.v1.prices.list({"active": True}).data] == [moved.id]
    assert client.v1.plans.retrieve(moved.id).amount == 3900
    hits = client.v1.products.search({"query": "metadata['tally_plan']:'pro'"}).data
    assert [p.id for p in hits] == [product.id]
    updated = client.v1.products.update(product.id, {"metadata": {"tally_plan": ""}})
    assert updated.metadata.to_dict() == {}
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.products.delete(product.id)
    assert "product.updated" in sim.events()


APRIL_11 = helpers.APRIL_1 + 10 * DAY
MAY_1 = helpers.APRIL_1 + 30 * DAY


@pytest.mark.parametrize(
    "anchor",
    [{"billing_cycle_anchor": MAY_1}, {"billing_cycle_anchor_config": {"day_of_month": 1}}],
    ids=["timestamp", "config"],
)
def test_it_prorates_the_first_period_up_to_the_billing_cycle_anchor(
    client: stripe.StripeClient, anchor: dict
) -> None:
    # Subscribed on 11 April at 00:00 to 30.00 a month, anchored to the 1st: the first period
    # is 11 April - 1 May, 20 days of the 30-day period 1 April - 1 May, so 3000 x 20/30 = 2000.
    clock = helpers.clock(client, at=APRIL_11)
    price = helpers.price(client, amount=3000)
    cus = helpers.customer(client, clock=clock.id)
    sub = client.v1.subscriptions.create(
        {"customer": cus.id, "items": [{"price": price.id}], "expand": ["latest_invoice"], **anchor}
    )
    assert sub.billing_cycle_anchor == MAY_1
    assert sub["items"].data[0].current_period_end == MAY_1
    first = sub.latest_invoice
    assert (first.amount_due, first.amount_paid, first.status) == (2000, 2000, "paid")
    line = first.lines.data[0]
    assert line.parent.subscription_item_details.proration is True
    assert (line.period.start, line.period.end) == (APRIL_11, MAY_1)
    if "billing_cycle_anchor_config" in anchor:
        assert sub.billing_cycle_anchor_config.day_of_month == 1
    # From the anchor on, whole periods at the full price.
    helpers.advance(client, clock.id, MAY_1 + 3600)
    renewed = client.v1.subscriptions.retrieve(sub.id, {"expand": ["latest_invoice"]})
    assert renewed.latest_invoice.amount_paid == 3000
    assert renewed["items"].data[0].current_period_end == MAY_1 + 31 * DAY


def test_it_charges_nothing_for_the_first_period_without_prorations(client: stripe.StripeClient) -> None:
    clock = helpers.clock(client, at=APRIL_11)
    price = helpers.price(client, amount=3000)
    cus = helpers.customer(client, clock=clock.id)
    sub = client.v1.subscriptions.create(
        {
            "customer": cus.id,
            "items": [{"price": price.id}],
            "billing_cycle_anchor": MAY_1,
            "proration_behavior": "none",
            "expand": ["latest_invoice"],
        }
    )
    assert (sub.status, sub.latest_invoice.amount_due) == ("active", 0)


def test_it_refuses_an_anchor_past_the_natural_billing_date(client: stripe.StripeClient) -> None:
    price = helpers.price(client, amount=3000)
    cus = helpers.customer(client)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.subscriptions.create(
            {"customer": cus.id, "items": [{"price": price.id}], "billing_cycle_anchor": 2**31}
        )
    assert caught.value.param == "billing_cycle_anchor"
    with pytest.raises(stripe.InvalidRequestError) as both:
        client.v1.subscriptions.create(
            {
                "customer": cus.id,
                "items": [{"price": price.id}],
                "billing_cycle_anchor": 2**31,
                "billing_cycle_anchor_config": {"day_of_month": 1},
            }
        )
    assert "only specify one of" in both.value.error.message


def _open_invoice(client: stripe.StripeClient, amount: int = 1234, **customer: Any) -> stripe.Invoice:
    cus = helpers.customer(client, **customer)
    client.v1.invoice_items.create({"customer": cus.id, "amount": amount, "currency": "usd"})
    draft = client.v1.invoices.create(
        {"customer": cus.id, "pending_invoice_items_behavior": "include", "auto_advance": False}
    )
    return client.v1.invoices.finalize_invoice(draft.id, {"auto_advance": False})


def test_it_serves_a_hosted_page_for_a_finalized_invoice(client: stripe.StripeClient, sim: Sim) -> None:
    invoice = _open_invoice(client, card="")
    assert invoice.hosted_invoice_url == f"{sim.url}/i/{invoice.id}"
    page = Client(sim.app).get(f"/i/{invoice.id}")
    assert page.status_code == 200
    assert invoice.number in page.text and "$12.34" in page.text
    declined = Client(sim.app).post(f"/i/{invoice.id}", data={"card_number": "4000000000000002"})
    assert declined.status_code == 402 and "declined" in declined.text
    paid = Client(sim.app).post(f"/i/{invoice.id}", data={"card_number": "4242424242424242"})
    assert paid.status_code == 200 and "Paid" in paid.text
    assert client.v1.invoices.retrieve(invoice.id).status == "paid"
    assert Client(sim.app).get("/i/in_missing").status_code == 404


def test_it_pays_an_uncollectible_invoice(client: stripe.StripeClient, sim: Sim) -> None:
    invoice = _open_invoice(client)
    assert client.v1.invoices.mark_uncollectible(invoice.id).status == "uncollectible"
    paid = client.v1.invoices.pay(invoice.id)
    assert (paid.status, paid.amount_paid) == ("paid", 1234)
    other = client.v1.invoices.mark_uncollectible(_open_invoice(client).id)
    assert client.v1.invoices.pay(other.id, {"paid_out_of_band": True}).status == "paid"


def test_it_sends_an_updated_event_for_every_stored_change(client: stripe.StripeClient, sim: Sim) -> None:
    invoice = _open_invoice(client)
    # Finalizing took the customer's next invoice number.
    updates = [e for e in sim.store.all("event") if e["type"] == "customer.updated"]
    assert updates[0]["data"]["previous_attributes"] == {"next_invoice_sequence": 1}
    # A failed attempt schedules the next one: the invoice says so in an update.
    clock = helpers.clock(client)
    price = helpers.price(client)
    cus = helpers.customer(client, card="pm_card_chargeCustomerFail", clock=clock.id)
    sub = client.v1.subscriptions.create(
        {"customer": cus.id, "items": [{"price": price.id}], "trial_period_days": 30}
    )
    helpers.advance(client, clock.id, helpers.APRIL_1 + 30 * DAY + 3600)
    renewal = client.v1.subscriptions.retrieve(sub.id).latest_invoice
    sub_updates = [
        e["data"].get("previous_attributes", {})
        for e in sim.store.all("event")
        if e["type"] == "customer.subscription.updated" and e["data"]["object"]["id"] == sub.id
    ]
    assert any("latest_invoice" in p for p in sub_updates)
    invoice_updates = [
        e["data"].get("previous_attributes", {})
        for e in sim.store.all("event")
        if e["type"] == "invoice.updated" and e["data"]["object"]["id"] == renewal
    ]
    assert any("next_payment_attempt" in p for p in invoice_updates), invoice_updates
    assert invoice.status == "open"
