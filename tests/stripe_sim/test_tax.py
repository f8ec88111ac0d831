"""Automatic tax from the simulator's rate table, tax IDs, and tax at checkout: amounts worked out
by hand in each test."""

from typing import Any

import pytest
import stripe
from werkzeug.test import Client

from tests.stripe_sim import helpers
from tests.stripe_sim.conftest import Sim


def _customer(client: stripe.StripeClient, country: str | None, **extra: Any) -> stripe.Customer:
    params: dict[str, Any] = {"email": "bob@example.com", **extra}
    if country:
        params["address"] = {
            "country": country,
            "line1": "Hauptstr. 1",
            "postal_code": "10115",
            "city": "Berlin",
        }
    cus = client.v1.customers.create(params)  # type: ignore[arg-type]
    pm = client.v1.payment_methods.attach("pm_card_visa", {"customer": cus.id})
    return client.v1.customers.update(cus.id, {"invoice_settings": {"default_payment_method": pm.id}})


def _taxed_invoice(
    client: stripe.StripeClient, customer: stripe.Customer, price: stripe.Price, **extra: Any
) -> stripe.Invoice:
    sub = client.v1.subscriptions.create(
        {"customer": customer.id, "items": [{"price": price.id}], "automatic_tax": {"enabled": True}, **extra}  # type: ignore[typeddict-item]
    )
    assert sub.automatic_tax.enabled is True
    return client.v1.invoices.retrieve(sub.latest_invoice)


def _tax(invoice: stripe.Invoice) -> list[tuple[int, int, str, str]]:
    return [
        (t.amount, t.taxable_amount, t.tax_behavior, t.taxability_reason)
        for line in invoice.lines.data
        for t in line.taxes
    ]


def test_an_exclusive_price_has_the_tax_added(client: stripe.StripeClient) -> None:
    # Germany, 19%: 1000 + 190 = 1190.
    price = helpers.price(client, amount=1000, tax_behavior="exclusive")
    invoice = _taxed_invoice(client, _customer(client, "DE"), price)
    assert _tax(invoice) == [(190, 1000, "exclusive", "standard_rated")]
    assert (invoice.subtotal, invoice.total_excluding_tax, invoice.total, invoice.amount_paid) == (
        1000,
        1000,
        1190,
        1190,
    )
    assert [(t.amount, t.taxable_amount) for t in invoice.total_taxes] == [(190, 1000)]
    rate = client.v1.tax_rates.retrieve(invoice.total_taxes[0].tax_rate_details.tax_rate)
    assert (rate.country, rate.percentage, rate.inclusive, rate.tax_type) == ("DE", 19.0, False, "vat")
    assert invoice.automatic_tax.status == "complete"
    assert invoice.customer_address.country == "DE"


def test_an_inclusive_price_has_the_tax_inside(client: stripe.StripeClient) -> None:
    # France, 20%, 1200 including tax: 1200 x 20/120 = 200 of it is tax.
    price = helpers.price(client, amount=1200, tax_behavior="inclusive")
    invoice = _taxed_invoice(client, _customer(client, "FR"), price)
    assert _tax(invoice) == [(200, 1000, "inclusive", "standard_rated")]
    assert (invoice.subtotal, invoice.total_excluding_tax, invoice.total) == (1200, 1000, 1200)


def test_an_eu_business_with_a_vat_number_is_reverse_charged(client: stripe.StripeClient) -> None:
    customer = _customer(client, "DE", tax_id_data=[{"type": "eu_vat", "value": "DE 123 456 789"}])
    price = helpers.price(client, amount=1000, tax_behavior="exclusive")
    invoice = _taxed_invoice(client, customer, price)
    assert _tax(invoice) == [(0, 1000, "exclusive", "reverse_charge")]
    assert invoice.total == 1000
    assert [(t.type, t.value) for t in invoice.customer_tax_ids] == [("eu_vat", "DE123456789")]


def test_discounts_come_off_before_tax_rounded_per_line(client: stripe.StripeClient) -> None:
    # 1000, 25% off: 750; 19% of 750 is 142.5, rounded half to even: 142; 750 + 142 = 892.
    coupon = client.v1.coupons.create({"percent_off": "25", "duration": "forever"})
    price = helpers.price(client, amount=1000, tax_behavior="exclusive")
    invoice = _taxed_invoice(client, _customer(client, "DE"), price, discounts=[{"coupon": coupon.id}])
    assert _tax(invoice) == [(142, 750, "exclusive", "standard_rated")]
    assert (invoice.subtotal, invoice.total_excluding_tax, invoice.total) == (1000, 750, 892)


def test_a_country_the_seller_is_not_registered_in_pays_no_tax(client: stripe.StripeClient) -> None:
    invoice = _taxed_invoice(client, _customer(client, "JP"), helpers.price(client, amount=1000))
    assert _tax(invoice) == [(0, 1000, "exclusive", "not_collecting")]
    assert invoice.total == 1000


def test_automatic_tax_needs_the_customers_location(client: stripe.StripeClient) -> None:
    customer = _customer(client, None)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        _taxed_invoice(client, customer, helpers.price(client))
    assert caught.value.code == "customer_tax_location_invalid"
    assert client.v1.subscriptions.list({"customer": customer.id}).data == []


def test_tax_ids_are_format_checked_and_verified_as_in_test_mode(
    client: stripe.StripeClient, sim: Sim
) -> None:
    customer = _customer(client, "DE")
    for bad in ("DE12", "XX123456789", "NL123456789"):  # too short, no such country, NL needs B01
        with pytest.raises(stripe.InvalidRequestError) as caught:
            client.v1.customers.tax_ids.create(customer.id, {"type": "eu_vat", "value": bad})
        assert caught.value.code == "tax_id_invalid"
    verified = client.v1.customers.tax_ids.create(
        customer.id, {"type": "eu_vat", "value": "nl 123456789 b01"}
    )
    assert (verified.value, verified.country, verified.verification.status) == (
        "NL123456789B01",
        "NL",
        "verified",
    )
    unverified = client.v1.customers.tax_ids.create(customer.id, {"type": "eu_vat", "value": "DE111111111"})
    assert unverified.verification.status == "unverified"
    expanded = client.v1.customers.retrieve(customer.id, {"expand": ["tax_ids"]})
    assert {t.id for t in expanded.tax_ids.data} == {verified.id, unverified.id}
    assert client.v1.customers.tax_ids.delete(customer.id, unverified.id).deleted is True
    assert [t.id for t in client.v1.customers.tax_ids.list(customer.id).data] == [verified.id]
    assert sim.events(type="customer.tax_id.created") == ["customer.tax_id.created"] * 2
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.create({"tax_id_data": [{"type": "eu_vat", "value": "DE1"}]})


def test_an_unverified_vat_number_is_not_reverse_charged(client: stripe.StripeClient) -> None:
    customer = _customer(client, "DE", tax_id_data=[{"type": "eu_vat", "value": "DE111111111"}])
    invoice = _taxed_invoice(client, customer, helpers.price(client, amount=1000))
    assert _tax(invoice) == [(190, 1000, "exclusive", "standard_rated")]


# --- checkout ----------------------------------------------------------------------------------


def _checkout(client: stripe.StripeClient, price: stripe.Price, **extra: Any) -> stripe.checkout.Session:
    return client.v1.checkout.sessions.create(
        {
            "mode": "subscription",
            "line_items": [{"price": price.id, "quantity": 1}],
            "success_url": "http://127.0.0.1:8000/done",
            "customer_email": "bob@example.com",
            "automatic_tax": {"enabled": True},
            "billing_address_collection": "required",
            "tax_id_collection": {"enabled": True},
            **extra,
        }  # type: ignore[arg-type]
    )


def test_checkout_collects_the_address_and_computes_tax(client: stripe.StripeClient, sim: Sim) -> None:
    price = helpers.price(client, amount=2000, tax_behavior="exclusive")
    session = _checkout(client, price)
    page = Client(sim.app)
    html = page.get(f"/checkout/{session.id}").get_data(as_text=True)
    assert "Billing address" in html and "VAT number" in html
    missing = page.post(f"/checkout/{session.id}", data={"card_number": "4242424242424242"})
    assert missing.status_code == 402 and "billing address" in missing.get_data(as_text=True)
    done = page.post(
        f"/checkout/{session.id}", data={"card_number": "4242424242424242", "country": "IE", "city": "Dublin"}
    )
    assert done.status_code == 303
    session = client.v1.checkout.sessions.retrieve(session.id)
    # Ireland, 23%: 2000 + 460.
    assert (session.amount_subtotal, session.total_details.amount_tax, session.amount_total) == (
        2000,
        460,
        2460,
    )
    assert session.customer_details.address.country == "IE"
    invoice = client.v1.invoices.retrieve(
        client.v1.subscriptions.retrieve(session.subscription).latest_invoice
    )
    assert (invoice.total, invoice.amount_paid) == (2460, 2460)


def test_checkout_reverse_charges_an_eu_business(client: stripe.StripeClient, sim: Sim) -> None:
    price = helpers.price(client, amount=2000, tax_behavior="exclusive")
    session = _checkout(client, price)
    page = Client(sim.app)
    bad = page.post(
        f"/checkout/{session.id}", data={"card_number": "4242424242424242", "country": "DE", "tax_id": "DE12"}
    )
    assert bad.status_code == 402 and "Invalid value for eu_vat." in bad.get_data(as_text=True)
    assert client.v1.customers.list({"email": "bob@example.com"}).data == []
    page.post(
        f"/checkout/{session.id}",
        data={
            "card_number": "4242424242424242",
            "country": "DE",
            "business_name": "Beispiel GmbH",
            "tax_id": "DE123456789",
        },
    )
    session = client.v1.checkout.sessions.retrieve(session.id)
    assert session.status == "complete" and session.amount_total == 2000
    assert [(t.type, t.value) for t in session.customer_details.tax_ids] == [("eu_vat", "DE123456789")]
    customer = client.v1.customers.retrieve(session.customer, {"expand": ["tax_ids"]})
    assert (customer.name, customer.address.country) == ("Beispiel GmbH", "DE")
    assert [t.value for t in customer.tax_ids.data] == ["DE123456789"]
    invoice = client.v1.invoices.retrieve(
        client.v1.subscriptions.retrieve(session.subscription).latest_invoice
    )
    assert _tax(invoice) == [(0, 2000, "exclusive", "reverse_charge")]


def test_checkout_for_a_customer_without_an_address_must_save_the_one_entered(
    client: stripe.StripeClient,
) -> None:
    price = helpers.price(client, amount=2000)
    customer = client.v1.customers.create({"email": "bob@example.com"})
    with pytest.raises(stripe.InvalidRequestError) as caught:
        _checkout(client, price, customer=customer.id, customer_email=None)
    assert caught.value.param == "customer_update[address]"
    assert _checkout(
        client, price, customer=customer.id, customer_email=None, customer_update={"address": "auto"}
    )


def test_the_hosted_invoice_page_shows_discounts_and_tax(client: stripe.StripeClient, sim: Sim) -> None:
    coupon = client.v1.coupons.create({"percent_off": "25", "duration": "forever", "name": "Quarter off"})
    price = helpers.price(client, amount=1000, tax_behavior="exclusive")
    invoice = _taxed_invoice(client, _customer(client, "DE"), price, discounts=[{"coupon": coupon.id}])
    html = Client(sim.app).get(f"/i/{invoice.id}").get_data(as_text=True)
    assert "Discount: Quarter off</td><td>-$2.50" in html
    assert "VAT 19%</td><td>$1.42" in html
