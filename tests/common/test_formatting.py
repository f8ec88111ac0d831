from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.template import Context, Template

from common import formatting


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (4900, "usd", "$49"),
        (1250, "usd", "$12.50"),
        (123456789, "usd", "$1,234,567.89"),
        (-1250, "usd", "-$12.50"),
        (1500, "eur", "€15"),
        (1500, "jpy", "¥1,500"),
        (1500, "JPY", "¥1,500"),
        (12345, "kwd", "12.345 KWD"),
        (0, "usd", "$0"),
        (None, "usd", ""),
    ],
)
def test_it_formats_money_in_the_currency_s_own_minor_units(amount, currency, text):
    assert formatting.money(amount, currency) == text


def test_it_converts_between_typed_units_and_minor_units_exactly():
    assert formatting.to_major(1050, "usd") == Decimal("10.50")
    assert formatting.to_major(5000, "jpy") == Decimal(5000)
    assert formatting.to_major(12345, "kwd") == Decimal("12.345")
    assert formatting.to_minor("10.5", "usd") == 1050
    assert formatting.to_minor(Decimal(5000), "jpy") == 5000
    assert formatting.to_minor("0.1", "usd") == 10  # no float ever: 0.1 is exact here
    assert formatting.to_minor(formatting.to_major(987654321, "usd"), "usd") == 987654321


@pytest.mark.parametrize(
    ("value", "currency"), [("0.5", "jpy"), ("1.001", "usd"), ("abc", "usd"), ("NaN", "usd")]
)
def test_it_refuses_amounts_the_currency_cannot_hold(value, currency):
    with pytest.raises(ValueError):
        formatting.to_minor(value, currency)


def test_it_formats_credits_and_ledger_movements():
    assert formatting.number(1234567) == "1,234,567"
    assert formatting.number(None) == ""
    assert formatting.signed(500) == "+500"
    assert formatting.signed(-1200) == "-1,200"


def test_it_writes_dates_in_words():
    assert formatting.day(date(2026, 12, 1)) == "1 Dec 2026"
    assert formatting.moment(datetime(2026, 12, 1, 14, 5, tzinfo=UTC)) == "1 Dec 2026, 14:05"
    assert formatting.day(None) == ""


def test_every_template_can_load_the_library():
    rendered = Template("{% load formatting %}{{ a|money:'jpy' }} {{ n|number }} {{ m|signed }}").render(
        Context({"a": 1500, "n": 12000, "m": -5})
    )
    assert rendered == "¥1,500 12,000 -5"
