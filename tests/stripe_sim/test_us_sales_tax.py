"""US state sales tax from the simulator's documented table (`stripe_sim.tax.US_STATE_RATES`):
driven by the customer's postal address, its tax rate naming the state; amounts by hand."""

from typing import Any

import pytest
import stripe

from tests.stripe_sim import helpers


def _us_customer(client: stripe.StripeClient, **address: Any) -> stripe.Customer:
    full = {"country": "US", "line1": "1 Main St", "city": "Somewhere", **address}
    cus = client.v1.customers.create({"email": "carol@example.com", "address": full})
    pm = client.v1.payment_methods.attach("pm_card_visa", {"customer": cus.id})
    return client.v1.customers.update(cus.id, {"invoice_settings": {"default_payment_method": pm.id}})


def _invoice(client: stripe.StripeClient, customer: stripe.Customer, price: stripe.Price) -> stripe.Invoice:
    sub = client.v1.subscriptions.create(
        {"customer": customer.id, "items": [{"price": price.id}], "automatic_tax": {"enabled": True}}
    )
    return client.v1.invoices.retrieve(sub.latest_invoice)


def _taxes(invoice: stripe.Invoice) -> list[tuple[int, int, str, str]]:
    return [(t.amount, t.taxable_amount, t.tax_behavior, t.taxability_reason) for t in invoice.total_taxes]


@pytest.mark.parametrize(
    "state, amount, behavior, expected",
    [
        # New York, 4% on $10.00 excluding tax: 40, total 1040.
        ("NY", 1000, "exclusive", (40, 1000, "exclusive", "standard_rated", 1040)),
        # Washington, 6.5% on $9.99: 64.935 rounds to 65.
        ("WA", 999, "exclusive", (65, 999, "exclusive", "standard_rated", 1064)),
        # Texas, 6.25% inside $10.00: 1000 x 6.25/106.25 = 58.82, so 59 is tax and 941 taxable.
        ("TX", 1000, "inclusive", (59, 941, "inclusive", "standard_rated", 1000)),
        # Pennsylvania, 6% inside $49.00: 4900 x 6/106 = 277.36 → 277, 4623 taxable.
        ("PA", 4900, "inclusive", (277, 4623, "inclusive", "standard_rated", 4900)),
        # Oregon has no sales tax.
        ("OR", 1000, "exclusive", (0, 1000, "exclusive", "not_subject_to_tax", 1000)),
        # California: the seller is not registered there.
        ("CA", 1000, "exclusive", (0, 1000, "exclusive", "not_collecting", 1000)),
    ],
    ids=[
        "ny-exclusive",
        "wa-rounding",
        "tx-inclusive",
        "pa-inclusive",
        "or-no-sales-tax",
        "ca-not-registered",
    ],
)
def test_the_state_of_the_address_decides_the_sales_tax(
    client: stripe.StripeClient, state: str, amount: int, behavior: str, expected: tuple
) -> None:
    price = helpers.price(client, amount=amount, tax_behavior=behavior)
    invoice = _invoice(client, _us_customer(client, state=state, postal_code="12345"), price)
    assert (*_taxes(invoice)[0], invoice.total) == expected
    assert invoice.customer_address.state == state


def test_a_states_tax_rate_names_the_state_as_stripe_does(client: stripe.StripeClient) -> None:
    price = helpers.price(client, amount=1000, tax_behavior="exclusive")
    invoice = _invoice(client, _us_customer(client, state="NY", postal_code="10001"), price)
    rate = client.v1.tax_rates.retrieve(invoice.total_taxes[0].tax_rate_details.tax_rate)
    assert (rate.country, rate.state, rate.jurisdiction, rate.jurisdiction_level) == (
        "US",
        "NY",
        "New York",
        "state",
    )
    assert (rate.tax_type, rate.display_name, rate.percentage, rate.inclusive) == (
        "sales_tax",
        "Sales Tax",
        4.0,
        False,
    )
    assert invoice.lines.data[0].taxes[0].tax_rate_details.tax_rate == rate.id
    # Another state is another rate; the same state and behaviour the same rate again.
    texas = _invoice(client, _us_customer(client, state="TX", postal_code="75001"), price)
    again = _invoice(client, _us_customer(client, state="NY", postal_code="14201"), price)
    assert texas.total_taxes[0].tax_rate_details.tax_rate != rate.id
    assert again.total_taxes[0].tax_rate_details.tax_rate == rate.id


def test_an_address_without_a_state_is_placed_by_its_zip_code(client: stripe.StripeClient) -> None:
    price = helpers.price(client, amount=1000, tax_behavior="exclusive")
    invoice = _invoice(client, _us_customer(client, postal_code="98101"), price)  # Seattle
    assert _taxes(invoice) == [(65, 1000, "exclusive", "standard_rated")]
    rate = client.v1.tax_rates.retrieve(invoice.total_taxes[0].tax_rate_details.tax_rate)
    assert rate.state == "WA"


@pytest.mark.parametrize("postal_code", [None, "00000", "ABCDE"], ids=["no-zip", "unplaced-zip", "not-a-zip"])
def test_a_us_address_with_no_state_stripe_can_place_is_refused(
    client: stripe.StripeClient, postal_code: str | None
) -> None:
    price = helpers.price(client, amount=1000, tax_behavior="exclusive")
    customer = _us_customer(client, **({"postal_code": postal_code} if postal_code else {}))
    with pytest.raises(stripe.InvalidRequestError) as error:
        _invoice(client, customer, price)
    assert error.value.code == "customer_tax_location_invalid"
    assert client.v1.subscriptions.list({"customer": customer.id}).data == []
