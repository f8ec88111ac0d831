"""Every object type the simulator serves carries the top-level fields of Stripe's own example
of it (``stripe_fixtures.json``: an excerpt of Stripe's OpenAPI fixtures)."""

import json
from pathlib import Path
from typing import Any

import pytest
import stripe
from werkzeug.test import Client

from stripe_sim.strict import schema
from tests.stripe_sim import helpers
from tests.stripe_sim.conftest import Sim

FIXTURES = json.loads((Path(__file__).parent / "stripe_fixtures.json").read_text())


def _disputed(client: stripe.StripeClient, customer: str) -> stripe.Dispute:
    pi = client.v1.payment_intents.create(
        {
            "amount": 700,
            "currency": "usd",
            "customer": customer,
            "payment_method": "pm_card_createDispute",
            "confirm": True,
        }
    )
    return client.v1.disputes.list({"payment_intent": pi.id}).data[0]


def _served(client: stripe.StripeClient, sim: Sim) -> dict[str, Any]:
    """One instance of every served type, fetched through the SDK."""
    out: dict[str, Any] = {}
    clock = helpers.clock(client)
    meter = client.v1.billing.meters.create(
        {"display_name": "m", "event_name": "m", "default_aggregation": {"formula": "sum"}}
    )
    price = helpers.price(client)
    cus = helpers.customer(client, clock=clock.id)
    sub = client.v1.subscriptions.create(
        {"customer": cus.id, "items": [{"price": price.id}], "expand": ["latest_invoice.payments"]}
    )
    invoice = sub.latest_invoice
    pi = client.v1.payment_intents.retrieve(invoice.payments.data[0].payment.payment_intent)
    charge = client.v1.charges.retrieve(pi.latest_charge)
    one_time = helpers.price(client, interval=None)
    session = client.v1.checkout.sessions.create(
        {"mode": "payment", "line_items": [{"price": one_time.id}], "success_url": "http://x/"}
    )
    endpoint = client.v1.webhook_endpoints.create({"url": "http://127.0.0.1:9/hook", "enabled_events": ["*"]})
    ii = client.v1.invoice_items.create({"customer": cus.id, "amount": 100, "currency": "usd"})
    portal = client.v1.billing_portal.sessions.create({"customer": cus.id})
    meter_event = client.v1.billing.meter_events.create(
        {"event_name": "m", "payload": {"stripe_customer_id": cus.id, "value": "2"}}
    )
    out.update(
        {
            "account": client.v1.accounts.retrieve_current(),
            "customer": client.v1.customers.retrieve(cus.id),
            "product": client.v1.products.retrieve(price.product),
            "price": client.v1.prices.retrieve(price.id),
            "plan": client.v1.plans.retrieve(price.id),
            "payment_method": client.v1.payment_methods.retrieve(cus.invoice_settings.default_payment_method),
            "setup_intent": client.v1.setup_intents.create({"customer": cus.id}),
            "payment_intent": pi,
            "charge": charge,
            "refund": client.v1.refunds.create({"charge": charge.id, "amount": 1}),
            "dispute": _disputed(client, cus.id),
            "balance_transaction": client.v1.balance_transactions.retrieve(charge.balance_transaction),
            "subscription": client.v1.subscriptions.retrieve(sub.id),
            "subscription_item": client.v1.subscription_items.retrieve(sub["items"].data[0].id),
            "invoice": client.v1.invoices.retrieve(invoice.id),
            "line_item": client.v1.invoices.line_items.list(invoice.id).data[0],
            "invoice_payment": invoice.payments.data[0],
            "invoiceitem": ii,
            "item": client.v1.checkout.sessions.line_items.list(session.id).data[0],
            "checkout.session": session,
            "billing_portal.session": portal,
            "billing_portal.configuration": client.v1.billing_portal.configurations.retrieve(
                portal.configuration
            ),
            "billing.meter": meter,
            "billing.meter_event": meter_event,
            "billing.meter_event_summary": client.v1.billing.meters.event_summaries.list(
                meter.id, {"customer": cus.id, "start_time": 0, "end_time": 2**31}
            ).data[0],
            "event": client.v1.events.list({"limit": 1}).data[0],
            "webhook_endpoint": endpoint,
            "test_helpers.test_clock": client.v1.test_helpers.test_clocks.retrieve(clock.id),
            "deleted_invoiceitem": client.v1.invoice_items.delete(ii.id),
            "deleted_webhook_endpoint": client.v1.webhook_endpoints.delete(endpoint.id),
            "deleted_price": {"id": "price_x", "object": "price", "deleted": True},
        }
    )
    out["deleted_subscription_item"] = client.v1.subscription_items.delete(
        client.v1.subscription_items.create(
            {
                "subscription": sub.id,
                "price": helpers.price(client, name="Add-on").id,
                "proration_behavior": "none",
            }
        ).id,
        {"proration_behavior": "none"},
    )
    coupon = client.v1.coupons.create({"percent_off": "10", "duration": "forever"})
    promo = client.v1.promotion_codes.create({"promotion": {"type": "coupon", "coupon": coupon.id}})
    discounted = client.v1.subscriptions.create(
        {"customer": cus.id, "items": [{"price": price.id}], "discounts": [{"promotion_code": promo.id}]},
    )
    out["coupon"] = client.v1.coupons.retrieve(coupon.id)
    out["promotion_code"] = client.v1.promotion_codes.retrieve(promo.id)
    out["discount"] = client.v1.subscriptions.retrieve(discounted.id, {"expand": ["discounts"]}).discounts[0]
    out["deleted_coupon"] = client.v1.coupons.delete(
        client.v1.coupons.create({"amount_off": 100, "currency": "usd"}).id
    )
    taxed = client.v1.customers.create({"address": {"country": "DE"}})
    tax_id = client.v1.customers.tax_ids.create(taxed.id, {"type": "eu_vat", "value": "DE123456789"})
    out["tax_id"] = client.v1.customers.tax_ids.retrieve(taxed.id, tax_id.id)
    out["tax_rate"] = client.v1.tax_rates.create(
        {"display_name": "VAT", "percentage": "19", "inclusive": False}
    )
    out["deleted_tax_id"] = client.v1.customers.tax_ids.delete(taxed.id, tax_id.id)
    lonely = client.v1.products.create({"name": "Unused"})
    out["deleted_product"] = client.v1.products.delete(lonely.id)
    out["deleted_customer"] = client.v1.customers.delete(
        client.v1.customers.create({"email": "x@example.com"}).id
    )
    out["deleted_test_helpers.test_clock"] = client.v1.test_helpers.test_clocks.delete(clock.id)
    assert Client(sim.app).get("/_sim/").status_code == 200
    return out


def test_it_serves_every_field_of_stripes_example_objects(client: stripe.StripeClient, sim: Sim) -> None:
    """The examples predate this API version: a field it no longer has (``invoice.subscription``)
    or leaves out when empty (``account.requirements``) is not asked for."""
    served = _served(client, sim)
    missing = {}
    for kind, example in FIXTURES.items():
        if kind.startswith("_"):
            continue
        obj = served[kind]
        data = obj.to_dict() if hasattr(obj, "to_dict") else obj
        entry = schema().types[schema().objects[example["object"]]]
        current = set(entry["fields"]) - set(entry.get("absent", ()))
        gaps = sorted((set(example) & current) - set(data))
        if gaps:
            missing[kind] = gaps
        assert data["object"] == example["object"], kind
        if "livemode" in data and kind != "billing_portal.session":
            assert data["livemode"] is False
    assert missing == {}


@pytest.mark.parametrize(
    ("kind", "prefix"),
    [("customer", "cus_"), ("subscription", "sub_"), ("invoice", "in_"), ("charge", "ch_")],
)
def test_it_uses_stripes_id_prefixes(client: stripe.StripeClient, sim: Sim, kind: str, prefix: str) -> None:
    price = helpers.price(client)
    cus = helpers.customer(client)
    client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": price.id}]})
    assert all(o["id"].startswith(prefix) for o in sim.store.all(kind))
