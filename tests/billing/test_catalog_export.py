import tomllib
from io import StringIO

import pytest
from django.core.management import call_command

from billing.catalog import catalog_apply, parse_catalog
from billing.catalog.export import catalog_export_data, catalog_export_toml
from billing.models import Coupon, PlanEntitlement, PlanLineItem

pytestmark = pytest.mark.django_db


def round_trip() -> list[str]:
    return catalog_apply(parse_catalog(tomllib.loads(catalog_export_toml())))


def test_it_exports_the_shipped_catalog_and_imports_it_as_a_no_op():
    assert round_trip() == []


def test_it_round_trips_edits_made_in_the_database():
    item = PlanLineItem.objects.get(plan__key="pro_monthly", key="base")
    item.unit_amount = 5900
    item.currency_options = {"eur": {"unit_amount": 5500}, "gbp": {"unit_amount": 4700}}
    item.save()
    team = PlanLineItem.objects.get(plan__key="team_monthly", key="seats")
    team.tiers = [
        {"up_to": 3, "unit_amount": 0, "flat_amount": 900},
        {"up_to": None, "unit_amount": 1100, "flat_amount": 0},
    ]
    # Its euro tiers keep the same bounds (the file refuses others).
    team.currency_options = {
        "eur": {
            "tiers": [
                {"up_to": 3, "unit_amount": 0, "flat_amount": 800},
                {"up_to": None, "unit_amount": 1000, "flat_amount": 0},
            ]
        }
    }
    team.save()
    ent = PlanEntitlement.objects.get(plan__key="pro_monthly", feature__key="ai_generations")
    ent.warn_at = [50, 90]
    ent.save()
    coupon = Coupon.objects.get(key="launch")
    coupon.percent_off = "12.50"
    coupon.save()
    PlanLineItem.objects.filter(plan__key="ai_yearly").update(stripe_price_id="")
    assert round_trip() == []
    assert PlanLineItem.objects.get(pk=item.pk).unit_amount == 5900


def test_it_carries_currency_options_tax_behavior_and_coupons():
    PlanLineItem.objects.filter(plan__key="pro_yearly").update(unit_amount=47000)
    from billing.models import Plan

    Plan.objects.filter(key="ai_monthly").update(tax_behavior="inclusive")
    data = tomllib.loads(catalog_export_toml())
    assert data == catalog_export_data() | {"coupons": data["coupons"]}  # what is written reads back
    pro = {p["key"]: p for p in data["products"]["pro"]["plans"]}
    assert pro["pro_yearly"]["line_items"][0] == {
        "key": "base",
        "kind": "flat",
        "unit_amount": 47000,
        "currency_options": {"eur": {"unit_amount": 45000}},
    }
    ai = {p["key"]: p for p in data["products"]["ai"]["plans"]}
    assert ai["ai_monthly"]["tax_behavior"] == "inclusive"
    assert data["coupons"]["welcome"]["currency_options"] == {"eur": 900}
    assert data["coupons"]["welcome"]["promotion_codes"][0]["code"] == "WELCOME10"
    assert round_trip() == []


def test_the_command_writes_the_file(tmp_path):
    path = tmp_path / "exported.toml"
    call_command("catalog_export", "--file", str(path), stdout=StringIO())
    assert catalog_apply(parse_catalog(tomllib.loads(path.read_text()))) == []
