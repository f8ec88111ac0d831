"""Staff change a price in the admin and it reaches Stripe, the pricing page and nobody's bill."""

from io import StringIO

import pytest
import requests
from django.conf import settings
from django.core.management import call_command
from playwright.sync_api import expect

from billing import catalog
from billing.gateway.client import stripe_client
from billing.models import OrgSubscription, PlanLineItem
from tests.billing.conftest import subscribe
from tests.conftest import PASSWORD
from tests.factories import OrganizationFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def staff_logs_in(page) -> None:
    UserFactory(email="sam@example.com", is_staff=True, is_superuser=True)
    page.goto("/admin/login/")
    page.fill("#id_username", "sam@example.com")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")


def change_pro_monthly(page, amount: str) -> None:
    page.goto("/admin/billing/plan/")
    page.click("text=pro_monthly")
    page.fill("#id_line_items-0-unit_amount", amount)
    page.click("input[name=_save]")


def pro_row(page):
    return page.locator("#result_list tr", has_text="pro_monthly")


def test_staff_change_pros_monthly_amount_and_it_reaches_stripe_and_the_pricing_page(
    new_page, shoot, stripe_sim
):
    catalog.catalog_push()
    client = stripe_client()
    old = PlanLineItem.objects.get(plan__key="pro_monthly", key="base").stripe_price_id
    subscriber = subscribe("pro_monthly", organization=OrganizationFactory(slug="early"), sync=True)
    assert subscriber.price_ids == [old]

    page = new_page()
    staff_logs_in(page)
    change_pro_monthly(page, "5900")
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    expect(pro_row(page).locator(".stripe-in_sync")).to_have_text("In sync")
    shoot(page, "admin-catalog-in-sync")

    [selling] = client.v1.prices.list({"lookup_keys": ["tally:pro_monthly:base"]}).data
    assert selling.unit_amount == 5900 and selling.id != old
    assert client.v1.prices.retrieve(old).active is False

    page.goto("/pricing/")
    expect(page.locator("[data-testid=price-pro] .amount")).to_have_text("$59")

    # The subscriber on the old price keeps it (grandfathered, the default).
    remote = client.v1.subscriptions.retrieve(subscriber.stripe_subscription_id)
    assert [item.price.id for item in remote["items"].data] == [old]
    assert OrgSubscription.objects.get(pk=subscriber.pk).price_ids == [old]
    page.goto(f"/admin/billing/plan/{subscriber.plan_id}/change/")
    expect(page.locator(".field-price_versions")).to_contain_text(
        f"{old} · 4900 · 1 subscription(s) · archived"
    )
    expect(page.locator(".field-price_versions")).to_contain_text(
        f"{selling.id} · 5900 · 0 subscription(s) · selling"
    )

    out = StringIO()
    call_command("catalog_sync", "--dry-run", stdout=out)
    text = out.getvalue()
    assert "unit_amount 5900 in the database, 4900 in the file" in text
    assert "stripe price" not in text and "49.00" not in text  # nothing would revert the edit
    assert client.v1.prices.list({"lookup_keys": ["tally:pro_monthly:base"]}).data[0].id == selling.id


def test_a_failed_push_is_shown_with_stripes_error_and_retried_from_the_admin(new_page, shoot, stripe_sim):
    catalog.catalog_push()
    client = stripe_client()
    old = PlanLineItem.objects.get(plan__key="pro_monthly", key="base").stripe_price_id
    fault = {"path": "/v1/prices", "method": "POST", "status": 400, "message": "Price refused (simulated)"}
    assert requests.post(f"{settings.STRIPE_API_HOST}/_sim/faults", json=fault, timeout=10).status_code == 200

    page = new_page()
    staff_logs_in(page)
    change_pro_monthly(page, "5900")
    expect(pro_row(page).locator(".stripe-failed")).to_have_text("Failed: Price refused (simulated)")
    shoot(page, "admin-catalog-push-failed")
    assert client.v1.prices.list({"lookup_keys": ["tally:pro_monthly:base"]}).data[0].id == old
    page.goto("/pricing/")  # the database has the new amount; Stripe still sells the old price
    assert PlanLineItem.objects.get(plan__key="pro_monthly", key="base").stripe_price_id == old

    page.goto("/admin/billing/plan/")
    pro_row(page).locator("input.action-select").check()
    page.select_option("select[name=action]", "push_to_stripe")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("1 pushed to Stripe.")
    expect(pro_row(page).locator(".stripe-in_sync")).to_have_text("In sync")
    [selling] = client.v1.prices.list({"lookup_keys": ["tally:pro_monthly:base"]}).data
    assert selling.unit_amount == 5900 and client.v1.prices.retrieve(old).active is False
