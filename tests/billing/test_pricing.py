import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing import pricing
from billing.pricing import Tier

TEN_THEN_FIVE = [{"up_to": 5, "unit_amount": 1000}, {"up_to": None, "unit_amount": 500}]
SEATS = [
    {"up_to": 3, "unit_amount": 0},
    {"up_to": 10, "unit_amount": 1500},
    {"up_to": None, "unit_amount": 1200},
]


def test_it_prices_graduated_tiers_by_slices():
    # 5 x $10 + 3 x $5
    assert pricing.graduated(TEN_THEN_FIVE, 8).total == 6500


def test_it_prices_volume_tiers_at_the_tier_of_the_total():
    # all 8 units at the second tier's $5
    assert pricing.volume(TEN_THEN_FIVE, 8).total == 4000


def test_it_prices_the_per_seat_plan_as_stripe_does():
    graduated = pricing.graduated(SEATS, 12)
    assert graduated.total == 12900  # 3 free + 7 x $15 + 2 x $12
    assert [(line.first, line.last, line.amount) for line in graduated.lines] == [
        (1, 3, 0),
        (4, 10, 10500),
        (11, 12, 2400),
    ]
    assert pricing.volume(SEATS, 12).total == 14400  # 12 x $12


def test_it_adds_each_reached_tiers_flat_amount():
    tiers = [
        {"up_to": 2, "unit_amount": 100, "flat_amount": 1000},
        {"up_to": None, "unit_amount": 50, "flat_amount": 200},
    ]
    assert pricing.graduated(tiers, 2).total == 1200
    assert pricing.graduated(tiers, 3).total == 1200 + 50 + 200
    assert pricing.volume(tiers, 3).total == 3 * 50 + 200


def test_it_prices_nothing_for_no_units():
    assert pricing.graduated(SEATS, 0).total == 0
    assert pricing.volume(SEATS, 0).total == 0


def test_the_next_seat_costs_what_its_tier_says():
    assert pricing.marginal(quantity=3, tiers=SEATS, tiers_mode="graduated") == 1500
    assert pricing.marginal(quantity=10, tiers=SEATS, tiers_mode="graduated") == 1200
    assert pricing.marginal(quantity=2, tiers=SEATS, tiers_mode="graduated") == 0


def test_it_refuses_a_negative_quantity():
    with pytest.raises(ValueError):
        pricing.graduated(SEATS, -1)


@st.composite
def tier_lists(draw):
    bounds = sorted(draw(st.sets(st.integers(1, 500), min_size=0, max_size=5)))
    tiers = [Tier(b, draw(st.integers(0, 10_000)), draw(st.integers(0, 5_000))) for b in bounds]
    tiers.append(Tier(None, draw(st.integers(0, 10_000)), draw(st.integers(0, 5_000))))
    return tiers


@given(tier_lists(), st.integers(0, 2_000))
def test_graduated_totals_are_the_sum_of_their_slices(tiers, quantity):
    breakdown = pricing.graduated(tiers, quantity)
    assert breakdown.total == sum(line.amount for line in breakdown.lines)
    assert sum(line.quantity for line in breakdown.lines) == quantity
    for line in breakdown.lines:
        tier = tiers[line.tier]
        assert line.amount == line.quantity * tier.unit_amount + tier.flat_amount


@given(tier_lists(), st.integers(0, 2_000))
def test_graduated_totals_never_decrease_with_quantity(tiers, quantity):
    assert pricing.graduated(tiers, quantity + 1).total >= pricing.graduated(tiers, quantity).total


@given(tier_lists(), st.integers(1, 2_000))
def test_volume_charges_every_unit_at_the_tier_containing_the_quantity(tiers, quantity):
    tier = next(t for t in tiers if t.up_to is None or quantity <= t.up_to)
    assert pricing.volume(tiers, quantity).total == quantity * tier.unit_amount + tier.flat_amount
