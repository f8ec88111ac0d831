"""Billing meters and meter events, and their invoicing on metered prices."""

import pytest
import stripe

from tests.stripe_sim import helpers
from tests.stripe_sim.conftest import Sim


def _meter(client: stripe.StripeClient, formula: str = "sum", name: str = "ai_tokens"):
    return client.v1.billing.meters.create(
        {
            "display_name": name,
            "event_name": name,
            "default_aggregation": {"formula": formula},
            "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
            "value_settings": {"event_payload_key": "value"},
        }
    )


def _usage(client, meter, cus, value: int, identifier: str, at: int) -> None:
    client.v1.billing.meter_events.create(
        {
            "event_name": meter.event_name,
            "payload": {"stripe_customer_id": cus.id, "value": str(value)},
            "identifier": identifier,
            "timestamp": at,
        }
    )


@pytest.mark.parametrize(("formula", "expected"), [("sum", 12), ("count", 3), ("last", 7)])
def test_it_aggregates_and_dedupes_by_identifier(
    client: stripe.StripeClient, formula: str, expected: int
) -> None:
    meter = _meter(client, formula)
    cus = helpers.customer(client)
    start = helpers.APRIL_1
    _usage(client, meter, cus, 2, "a", start + 10)
    _usage(client, meter, cus, 3, "b", start + 20)
    _usage(client, meter, cus, 3, "b", start + 20)  # retried send: counted once
    _usage(client, meter, cus, 7, "c", start + 30)
    summaries = client.v1.billing.meters.event_summaries.list(
        meter.id, {"customer": cus.id, "start_time": start, "end_time": start + 100}
    )
    assert summaries.data[0].aggregated_value == expected


def test_it_rejects_events_for_unknown_meters(client: stripe.StripeClient) -> None:
    cus = helpers.customer(client)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.billing.meter_events.create(
            {"event_name": "nope", "payload": {"stripe_customer_id": cus.id, "value": "1"}}
        )


def test_it_invoices_metered_usage_over_the_period(client: stripe.StripeClient, sim: Sim) -> None:
    clock = helpers.clock(client)
    meter = _meter(client)
    product = client.v1.products.create({"name": "AI generations"})
    metered = client.v1.prices.create(
        {
            "currency": "usd",
            "product": product.id,
            "billing_scheme": "tiered",
            "tiers_mode": "graduated",
            "tiers": [{"up_to": 100, "unit_amount": 0}, {"up_to": "inf", "unit_amount": 2}],
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id},
        }
    )
    base = helpers.price(client, amount=1000)
    cus = helpers.customer(client, clock=clock.id)
    sub = client.v1.subscriptions.create(
        {"customer": cus.id, "items": [{"price": base.id, "quantity": 1}, {"price": metered.id}]}
    )
    first = client.v1.invoices.retrieve(sub.latest_invoice)
    assert first.amount_paid == 1000
    _usage(client, meter, cus, 150, "u1", helpers.APRIL_1 + 5 * helpers.DAY)
    _usage(client, meter, cus, 100, "u2", helpers.APRIL_1 + 6 * helpers.DAY)
    _usage(client, meter, cus, 999, "late", helpers.APRIL_1 + 31 * helpers.DAY)  # next period
    helpers.advance(client, clock.id, helpers.APRIL_1 + 30 * helpers.DAY + 10)
    renewal = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    lines = {line.pricing.price_details.price: line for line in renewal.lines.data}
    assert lines[metered.id].quantity == 250
    assert lines[metered.id].amount == 150 * 2
    assert lines[metered.id].period.end == helpers.APRIL_1 + 30 * helpers.DAY
    assert renewal.amount_paid == 1000 + 300
