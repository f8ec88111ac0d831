"""The money filter prints each currency in its own minor units (ISO 4217): cents for USD and
EUR, none for JPY."""

import pytest
from django.template import Context, Template


def _money(amount, currency: str) -> str:
    return Template("{% load billing %}{{ amount|money:currency }}").render(
        Context({"amount": amount, "currency": currency})
    )


@pytest.mark.parametrize(
    "amount, currency, shown",
    [
        (4900, "usd", "$49"),
        (1250, "usd", "$12.50"),
        (-735, "usd", "-$7.35"),
        (123456789, "usd", "$1,234,567.89"),
        (1500, "eur", "€15"),
        (1505, "eur", "€15.05"),
        (1500, "jpy", "¥1,500"),
        (-98, "jpy", "-¥98"),
        (1500, "JPY", "¥1,500"),
        (1234, "krw", "1,234 KRW"),
        (12345, "kwd", "12.345 KWD"),
        (999, "chf", "9.99 CHF"),
    ],
)
def test_it_prints_each_currency_in_its_own_minor_units(amount, currency, shown):
    assert _money(amount, currency) == shown
