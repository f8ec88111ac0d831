"""`catalog_sync`: the database is the catalog once loaded; the file is its import and export."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from billing.gateway.client import stripe_client
from billing.models import Plan, PlanEntitlement, PlanLineItem

pytestmark = pytest.mark.django_db


def sync(*args) -> str:
    out = StringIO()
    call_command("catalog_sync", *args, stdout=out)
    return out.getvalue()


def pro_price(client) -> dict:
    return client.v1.prices.list({"lookup_keys": ["tally:pro_monthly:base"]}).data[0]


def test_it_keeps_an_admin_edit_and_shows_the_three_way_difference(stripe_sim):
    sync()
    PlanLineItem.objects.filter(plan__key="pro_monthly", key="base").update(unit_amount=5900)
    out = sync("--dry-run")
    assert "unit_amount 5900 in the database, 4900 in the file" in out
    assert "the database is kept" in out
    assert "~ stripe price tally:pro_monthly:base: 59.00 USD per month" in out
    assert "49.00" not in out  # nothing proposes going back to the file's amount
    assert pro_price(stripe_client()).unit_amount == 4900  # a dry run pushes nothing

    sync()
    assert PlanLineItem.objects.get(plan__key="pro_monthly", key="base").unit_amount == 5900
    assert pro_price(stripe_client()).unit_amount == 5900
    out = sync("--dry-run")
    assert "stripe price" not in out  # the database and Stripe agree; only the file differs
    assert "1 would change" not in out and "Catalog is up to date." in out


def test_it_reverts_an_admin_edit_only_from_the_file(stripe_sim):
    PlanLineItem.objects.filter(plan__key="pro_monthly", key="base").update(unit_amount=5900)
    PlanEntitlement.objects.filter(plan__key="pro_monthly", feature__key="projects").update(limit=7)
    sync("--no-stripe")
    assert PlanLineItem.objects.get(plan__key="pro_monthly", key="base").unit_amount == 5900
    out = sync("--no-stripe", "--from-file", "--dry-run")
    assert "unit_amount: 5900 → 4900" in out
    assert PlanLineItem.objects.get(plan__key="pro_monthly", key="base").unit_amount == 5900
    sync("--no-stripe", "--from-file")
    assert PlanLineItem.objects.get(plan__key="pro_monthly", key="base").unit_amount == 4900
    assert PlanEntitlement.objects.get(plan__key="pro_monthly", feature__key="projects").limit == 5


def test_a_plan_made_in_the_admin_is_not_deactivated():
    free = Plan.objects.get(key="free")
    Plan.objects.create(key="starter", product=free.product, name="Starter")
    out = sync("--no-stripe")
    assert "plan starter (deactivated): not in the file" in out
    assert Plan.objects.get(key="starter").is_active


def test_it_loads_the_file_into_an_empty_catalog():
    PlanLineItem.objects.all().delete()
    PlanEntitlement.objects.all().delete()
    Plan.objects.all().delete()
    out = sync("--no-stripe")
    assert "+ plan pro_monthly" in out
    assert PlanLineItem.objects.get(plan__key="pro_monthly", key="base").unit_amount == 4900


BROKEN = """
currency = "usd"
[features.projects]
kind = "limit"
[products.pro]
[[products.pro.plans]]
key = "pro_monthly"
trial_days = -1
line_items = [{ key = "base", kind = "flat", unit_amount = -5 }]
"""


def test_an_invalid_file_is_reported_while_the_database_is_still_pushed(stripe_sim, tmp_path):
    sync()
    broken = tmp_path / "catalog.toml"
    broken.write_text(BROKEN)
    PlanLineItem.objects.filter(plan__key="pro_monthly", key="base").update(unit_amount=5900)
    out, err = StringIO(), StringIO()
    call_command("catalog_sync", "--file", str(broken), stdout=out, stderr=err)
    assert "Database → Stripe (pushed):" in out.getvalue()
    assert "~ stripe price tally:pro_monthly:base: 59.00 USD per month" in out.getvalue()
    assert "catalog.toml is not valid" in err.getvalue()
    assert "plan 'pro_monthly' trial_days: must be a whole number >= 0" in err.getvalue()
    assert "plan 'pro_monthly' line_items[0]: unit_amount is negative" in err.getvalue()
    assert pro_price(stripe_client()).unit_amount == 5900
    assert PlanLineItem.objects.get(plan__key="pro_monthly", key="base").unit_amount == 5900


def test_an_invalid_file_fails_when_asked_to_apply_it(tmp_path):
    broken = tmp_path / "catalog.toml"
    broken.write_text(BROKEN)
    with pytest.raises(CommandError) as failed:
        sync("--no-stripe", "--from-file", "--file", str(broken))
    assert "plan 'pro_monthly' trial_days: must be a whole number >= 0" in str(failed.value)
    assert PlanLineItem.objects.get(plan__key="pro_monthly", key="base").unit_amount == 4900
