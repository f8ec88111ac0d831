import tomllib

import pytest

from billing import catalog
from billing.catalog import DEFAULT_PATH, catalog_apply, parse_catalog
from billing.gateway.client import stripe_client
from billing.models import Addon, PlanLineItem, Product

pytestmark = pytest.mark.django_db


def test_it_pushes_products_prices_and_meters_to_stripe(stripe_sim):
    lines = catalog.catalog_push()
    assert "+ stripe product tally_pro" in lines
    client = stripe_client()
    price = client.v1.prices.list(
        {"lookup_keys": ["tally:team_monthly:seats"], "expand": ["data.tiers"]}
    ).data[0]
    assert price.billing_scheme == "tiered" and price.tiers_mode == "graduated"
    assert [(t.up_to, t.unit_amount) for t in price.tiers] == [(3, 0), (10, 1500), (None, 1200)]
    assert price.recurring.interval == "month"
    item = PlanLineItem.objects.get(plan__key="team_monthly", key="seats")
    assert item.stripe_price_id == price.id
    assert Product.objects.get(key="team").stripe_product_id == "tally_team"
    metered = PlanLineItem.objects.get(plan__key="team_monthly", key="ai_generations")
    remote = client.v1.prices.retrieve(metered.stripe_price_id)
    assert remote.recurring.usage_type == "metered" and remote.recurring.meter
    addon = Addon.objects.get(key="premium_onboarding")
    assert client.v1.prices.retrieve(addon.stripe_price_id).unit_amount == 29900


def test_pushing_again_changes_nothing(stripe_sim):
    catalog.catalog_push()
    before = len(stripe_client().v1.prices.list({"limit": 100}).data)
    assert catalog.catalog_push() == []
    assert len(stripe_client().v1.prices.list({"limit": 100}).data) == before


def test_a_new_amount_makes_a_new_price_and_archives_the_old_one(stripe_sim):
    catalog.catalog_push()
    client = stripe_client()
    old_id = PlanLineItem.objects.get(plan__key="pro_monthly").stripe_price_id
    # A customer is on the old price; changing the catalog must not touch their subscription.
    customer = client.v1.customers.create({"email": "dora@example.com"})
    card = client.v1.payment_methods.attach("pm_card_visa", {"customer": customer.id})
    client.v1.customers.update(customer.id, {"invoice_settings": {"default_payment_method": card.id}})
    subscription = client.v1.subscriptions.create({"customer": customer.id, "items": [{"price": old_id}]})
    with open(DEFAULT_PATH, "rb") as handle:
        raw = tomllib.load(handle)
    raw["products"]["pro"]["plans"][0]["line_items"][0]["unit_amount"] = 5900
    catalog_apply(parse_catalog(raw))
    lines = catalog.catalog_push()
    assert any(line.startswith("~ stripe price tally:pro_monthly:base") for line in lines)
    new_id = PlanLineItem.objects.get(plan__key="pro_monthly").stripe_price_id
    assert new_id != old_id
    old, new = client.v1.prices.retrieve(old_id), client.v1.prices.retrieve(new_id)
    assert (old.active, old.lookup_key, old.unit_amount) == (False, None, 4900)
    assert (new.active, new.lookup_key, new.unit_amount) == (True, "tally:pro_monthly:base", 5900)
    still = client.v1.subscriptions.retrieve(subscription.id)
    assert still["items"].data[0].price.id == old_id


def test_a_dry_run_pushes_nothing(stripe_sim):
    lines = catalog.catalog_push(dry_run=True)
    assert "+ stripe product tally_pro" in lines
    assert stripe_client().v1.products.list({"limit": 10}).data == []
