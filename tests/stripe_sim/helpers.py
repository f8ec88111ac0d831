"""Catalog and customer builders shared by the simulator tests (through the SDK only)."""

import datetime as dt
from typing import Any

import stripe

# 1 April 2026: April has 30 days, so a monthly period starting here is exactly 30 days long.
APRIL_1 = int(dt.datetime(2026, 4, 1, tzinfo=dt.UTC).timestamp())
DAY = 86400


def price(
    client: stripe.StripeClient,
    *,
    amount: int | None = 1000,
    interval: str | None = "month",
    name: str = "Pro",
    **extra: Any,
) -> stripe.Price:
    product = client.v1.products.create({"name": name})
    params: dict[str, Any] = {"currency": "usd", "product": product.id, **extra}
    if amount is not None and "tiers" not in extra:
        params["unit_amount"] = amount
    if interval:
        params["recurring"] = {"interval": interval, **params.get("recurring", {})}
    return client.v1.prices.create(params)  # type: ignore[arg-type]


def tiered(client: stripe.StripeClient, mode: str, tiers: list[dict[str, Any]]) -> stripe.Price:
    return price(client, amount=None, billing_scheme="tiered", tiers_mode=mode, tiers=tiers)


def customer(
    client: stripe.StripeClient, *, card: str = "pm_card_visa", clock: str | None = None
) -> stripe.Customer:
    params: dict[str, Any] = {"email": "alice@example.com"}
    if clock:
        params["test_clock"] = clock
    cus = client.v1.customers.create(params)  # type: ignore[arg-type]
    if card:
        pm = client.v1.payment_methods.attach(card, {"customer": cus.id})
        cus = client.v1.customers.update(cus.id, {"invoice_settings": {"default_payment_method": pm.id}})
    return cus


def clock(client: stripe.StripeClient, at: int = APRIL_1) -> stripe.test_helpers.TestClock:
    return client.v1.test_helpers.test_clocks.create({"frozen_time": at})


def advance(client: stripe.StripeClient, clock_id: str, to: int) -> None:
    client.v1.test_helpers.test_clocks.advance(clock_id, {"frozen_time": to})
