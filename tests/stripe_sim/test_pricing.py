"""Tier math and proration against hand-computed amounts."""

from fractions import Fraction

import pytest
import stripe

from stripe_sim import pricing
from tests.stripe_sim import helpers
from tests.stripe_sim.conftest import Sim

GRADUATED = [{"up_to": "5", "unit_amount": "1000"}, {"up_to": "inf", "unit_amount": "500"}]
SEATS = [
    {"up_to": "3", "unit_amount": "0"},
    {"up_to": "10", "unit_amount": "1500"},
    {"up_to": "inf", "unit_amount": "1200"},
]


def _price(scheme: str, tiers: list[dict], mode: str | None = None) -> dict:
    parsed = [
        {
            "up_to": None if t["up_to"] == "inf" else int(t["up_to"]),
            "unit_amount": int(t.get("unit_amount", 0)),
            "flat_amount": int(t["flat_amount"]) if "flat_amount" in t else None,
        }
        for t in tiers
    ]
    return {"billing_scheme": scheme, "tiers_mode": mode, "tiers": parsed}


@pytest.mark.parametrize(
    ("tiers", "mode", "quantity", "expected"),
    [
        (GRADUATED, "graduated", 8, 6500),
        (GRADUATED, "volume", 8, 4000),
        (SEATS, "graduated", 12, 12900),
        (SEATS, "volume", 12, 14400),
        (SEATS, "graduated", 3, 0),
        (SEATS, "volume", 10, 15000),
        (GRADUATED, "graduated", 5, 5000),
        (GRADUATED, "graduated", 0, 0),
    ],
)
def test_it_computes_tier_amounts(tiers: list, mode: str, quantity: int, expected: int) -> None:
    assert pricing.amount_for(_price("tiered", tiers, mode), quantity) == expected


def test_it_adds_flat_amounts_per_tier_reached() -> None:
    tiers = [
        {"up_to": "2", "unit_amount": "100", "flat_amount": "1000"},
        {"up_to": "inf", "unit_amount": "50", "flat_amount": "300"},
    ]
    assert pricing.amount_for(_price("tiered", tiers, "graduated"), 2) == 1200
    assert pricing.amount_for(_price("tiered", tiers, "graduated"), 4) == 1000 + 200 + 300 + 100
    assert pricing.amount_for(_price("tiered", tiers, "volume"), 4) == 300 + 200


def test_it_transforms_quantities_before_pricing() -> None:
    up = {"unit_amount": 500, "transform_quantity": {"divide_by": 1000, "round": "up"}}
    down = {"unit_amount": 500, "transform_quantity": {"divide_by": 1000, "round": "down"}}
    assert pricing.amount_for(up, 1001) == 1000
    assert pricing.amount_for(down, 1999) == 500


def test_it_prorates_with_round_half_to_even() -> None:
    assert pricing.prorate({"unit_amount": 1000}, 3, 15, 30) == 1500
    # 1000 * 1/8 = 125 exactly; 5 * 1/2 = 2.5 rounds to 2, 7 * 1/2 = 3.5 rounds to 4
    assert pricing.prorate({"unit_amount": 5}, 1, 1, 2) == 2
    assert pricing.prorate({"unit_amount": 7}, 1, 1, 2) == 4
    assert pricing.exact_amount({"unit_amount_decimal": "0.5"}, 3) == Fraction(3, 2)


def test_it_keeps_the_anchor_day_across_short_months() -> None:
    jan31 = 1769817600  # 2026-01-31T00:00Z
    feb = pricing.add_interval(jan31, "month", 1)
    assert feb == 1772236800  # 2026-02-28
    assert pricing.add_interval(feb, "month", 1, anchor=jan31) == 1774915200  # 2026-03-31


@pytest.mark.parametrize(
    ("tiers", "mode", "quantity", "expected"),
    [
        (GRADUATED, "graduated", 8, 6500),
        (GRADUATED, "volume", 8, 4000),
        (SEATS, "graduated", 12, 12900),
        (SEATS, "volume", 12, 14400),
    ],
)
def test_it_invoices_tiered_prices_exactly(
    client: stripe.StripeClient, tiers: list, mode: str, quantity: int, expected: int
) -> None:
    price = helpers.tiered(client, mode, tiers)
    cus = helpers.customer(client)
    sub = client.v1.subscriptions.create(
        {
            "customer": cus.id,
            "items": [{"price": price.id, "quantity": quantity}],
            "expand": ["latest_invoice"],
        }
    )
    assert sub.latest_invoice.amount_due == expected
    assert sub.latest_invoice.amount_paid == expected
    fetched = client.v1.prices.retrieve(price.id, {"expand": ["tiers"]})
    assert [t.up_to for t in fetched.tiers][-1] is None


def test_it_prorates_a_mid_period_quantity_raise_to_half_the_difference(
    client: stripe.StripeClient, sim: Sim
) -> None:
    clock = helpers.clock(client)
    price = helpers.price(client, amount=1000)
    cus = helpers.customer(client, clock=clock.id)
    sub = client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": price.id, "quantity": 5}]})
    item = sub["items"].data[0]
    assert item.current_period_end - item.current_period_start == 30 * helpers.DAY
    helpers.advance(client, clock.id, helpers.APRIL_1 + 15 * helpers.DAY)
    client.v1.subscriptions.update(sub.id, {"items": [{"id": item.id, "quantity": 8}]})
    pending = client.v1.invoice_items.list({"customer": cus.id, "pending": True}).data
    amounts = sorted(ii.amount for ii in pending)
    assert amounts == [-2500, 4000]
    assert sum(amounts) == 1500  # half of 3 x $10.00
    assert all(ii.proration for ii in pending)
    preview = client.v1.invoices.create_preview({"customer": cus.id, "subscription": sub.id})
    assert preview.amount_due == 8000 + 1500
    assert "upcoming" in preview.id
    # the preview did not change anything
    assert len(client.v1.invoice_items.list({"customer": cus.id, "pending": True}).data) == 2
    helpers.advance(client, clock.id, helpers.APRIL_1 + 30 * helpers.DAY + 60)
    renewal = client.v1.invoices.list({"subscription": sub.id, "limit": 1}).data[0]
    assert renewal.billing_reason == "subscription_cycle"
    assert renewal.amount_paid == 9500
    assert len(client.v1.invoice_items.list({"customer": cus.id, "pending": True}).data) == 0
