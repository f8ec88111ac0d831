import copy
import tomllib
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from billing.catalog import DEFAULT_PATH, CatalogError, catalog_apply, load_catalog, parse_catalog
from billing.models import Addon, Feature, Plan, PlanEntitlement, PlanLineItem

pytestmark = pytest.mark.django_db


@pytest.fixture
def raw():
    with open(DEFAULT_PATH, "rb") as handle:
        return tomllib.load(handle)


def problems(data) -> list[str]:
    with pytest.raises(CatalogError) as error:
        parse_catalog(data)
    return error.value.problems


def test_the_shipped_catalog_has_the_documented_plans():
    pro = Plan.objects.get(key="pro_monthly")
    assert pro.total() == 4900
    assert Plan.objects.get(key="pro_yearly").total() < 12 * 4900
    ent = {e.feature.key: e for e in pro.entitlements.select_related("feature")}
    assert (ent["api_calls"].limit, ent["team_members"].limit, ent["projects"].limit) == (
        10_000,
        10,
        5,
    )
    team = Plan.objects.get(key="team_monthly")
    assert team.total(seats=3) == 0 and team.total(seats=12) == 12900
    platform = Plan.objects.get(key="platform_monthly")
    assert platform.total(seats=5) == 4900 and platform.total(seats=7) == 4900 + 2000
    assert Plan.objects.get(key="enterprise").product.contact_sales
    for key, amount in (("ai_monthly", 500), ("ai_yearly", 5000)):
        plan = Plan.objects.get(key=key)
        assert plan.total() == amount
        assert plan.entitlements.get(feature__key="ai_generations").limit == 250
    assert Addon.objects.get(key="premium_onboarding").unit_amount == 29900
    seats = Addon.objects.get(key="extra_seats")
    assert seats.unit_amount == 9900
    assert seats.entitlements.get().amount == 5


def test_every_plan_has_a_row_for_every_feature():
    assert PlanEntitlement.objects.filter(plan__key="free").count() == Feature.objects.count()
    assert not PlanEntitlement.objects.get(plan__key="free", feature__key="sso").enabled


def test_applying_twice_changes_nothing_the_second_time():
    assert catalog_apply(load_catalog()) == []


def test_a_dry_run_reports_without_writing(raw):
    raw["products"]["pro"]["plans"][0]["line_items"][0]["unit_amount"] = 5900
    lines = catalog_apply(parse_catalog(raw), dry_run=True)
    assert lines == ["~ plan pro_monthly line item base: unit_amount: 4900 → 5900"]
    assert PlanLineItem.objects.get(plan__key="pro_monthly").unit_amount == 4900
    catalog_apply(parse_catalog(raw))
    assert PlanLineItem.objects.get(plan__key="pro_monthly").unit_amount == 5900


def test_a_plan_removed_from_the_file_is_deactivated_not_deleted(raw):
    del raw["products"]["ai"]
    lines = catalog_apply(parse_catalog(raw))
    assert "- plan ai_monthly (deactivated)" in lines
    assert not Plan.objects.get(key="ai_monthly").is_active


def test_it_names_an_unknown_feature(raw):
    raw["products"]["pro"]["entitlements"]["teleport"] = True
    assert "product 'pro' entitlements: unknown feature 'teleport'" in problems(raw)


def test_it_refuses_tiers_that_are_not_ascending(raw):
    tiers = raw["products"]["team"]["plans"][0]["line_items"][0]["tiers"]
    tiers[1]["up_to"] = 2
    assert any(
        p.startswith("plan 'team_monthly' line_items[0]: tiers are not ascending") for p in problems(raw)
    )


def test_it_refuses_a_last_tier_with_a_bound(raw):
    tiers = raw["products"]["team"]["plans"][0]["line_items"][0]["tiers"]
    tiers[-1]["up_to"] = 100
    assert "plan 'team_monthly' line_items[0]: the last tier must be open-ended (no up_to)" in (problems(raw))


def test_it_refuses_negative_amounts(raw):
    raw["products"]["pro"]["plans"][0]["line_items"][0]["unit_amount"] = -1
    raw["addons"]["extra_seats"]["unit_amount"] = -5
    found = problems(raw)
    assert "plan 'pro_monthly' line_items[0]: unit_amount is negative" in found
    assert "addon 'extra_seats' unit_amount: must be a whole number of cents >= 0" in found


def test_it_refuses_duplicate_plan_keys(raw):
    raw["products"]["ai"]["plans"][0]["key"] = "pro_monthly"
    assert "plan 'pro_monthly': duplicate plan key" in problems(raw)


def test_it_refuses_a_currency_mix(raw):
    raw["products"]["pro"]["plans"][1]["currency"] = "eur"
    assert "plan 'pro_yearly' currency: 'eur' differs from the catalog's 'usd'" in problems(raw)


def test_it_collects_every_problem_before_writing(raw):
    broken = copy.deepcopy(raw)
    broken["products"]["pro"]["entitlements"]["teleport"] = True
    broken["products"]["pro"]["plans"][0]["line_items"][0]["unit_amount"] = -1
    assert len(problems(broken)) == 2
    assert PlanLineItem.objects.get(plan__key="pro_monthly").unit_amount == 4900


def test_the_command_prints_the_problems_and_fails_when_asked_to_apply_the_file(tmp_path, raw):
    bad = tmp_path / "catalog.toml"
    bad.write_text('currency = "usd"\n[features.x]\nkind = "sometimes"\n')
    with pytest.raises(CommandError) as error:
        call_command("catalog_sync", "--file", str(bad), "--no-stripe", "--from-file")
    assert "feature 'x' kind: must be one of boolean, limit, metered" in str(error.value)
    assert "exactly one plan must be free" in str(error.value)


def test_the_command_reports_an_up_to_date_catalog():
    out = StringIO()
    call_command("catalog_sync", "--no-stripe", stdout=out)
    assert "Catalog is up to date." in out.getvalue()


def test_the_admin_applies_the_same_tier_rules():
    item = PlanLineItem.objects.get(plan__key="team_monthly", key="seats")
    item.tiers = [{"up_to": 5, "unit_amount": 100}, {"up_to": 3, "unit_amount": 50}]
    with pytest.raises(ValidationError) as error:
        item.full_clean()
    assert "tiers are not ascending" in str(error.value)
    assert "the last tier must be open-ended" in str(error.value)


def test_the_admin_refuses_a_recurring_addon_without_interval():
    addon = Addon(key="x", name="X", kind=Addon.Kind.RECURRING, unit_amount=100)
    with pytest.raises(ValidationError):
        addon.full_clean()
