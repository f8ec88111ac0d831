import re

import pytest
from playwright.sync_api import expect

from billing.models import OrgSubscription
from tests.browser.people import sign_up

pytestmark = pytest.mark.django_db(transaction=True)


def test_pricing_to_hosted_checkout_to_an_active_plan(new_page, shoot, stripe_live):
    page = new_page()
    sign_up(page, "Dana", "dana@example.com")

    page.goto("/pricing/")
    page.click("[data-testid=subscribe-ai]")
    # The simulator's hosted checkout page: a declined card first, then a good one.
    expect(page.locator("body")).to_contain_text("$5.00")
    page.fill("input[name=card_number]", "4000 0000 0000 0002")
    page.click("button[type=submit]")
    expect(page.locator("body")).to_contain_text("declined")
    page.fill("input[name=card_number]", "4242 4242 4242 4242")
    page.click("button[type=submit]")

    expect(page).to_have_url(re.compile(r"/billing/success/\?session_id=cs_"))
    expect(page.locator("[data-testid=checkout-status] h1")).to_contain_text("You're on AI Access (monthly)")
    expect(page.locator("[data-testid=checkout-status]")).to_contain_text("250 ai generations")
    shoot(page, "checkout-success")

    page.click("text=See billing")
    expect(page.locator("[data-testid=current-plan]")).to_have_text("AI Access (monthly)")
    expect(page.locator("[data-testid=status]")).to_have_text("Active")
    expect(page.locator("[data-testid=payments]")).to_contain_text("$5")
    expect(page.locator("[data-testid=upcoming]")).to_contain_text("$5")
    shoot(page, "billing")
    assert OrgSubscription.objects.get(organization__slug__startswith="dana").status == "active"


def test_a_promotion_code_typed_on_the_hosted_checkout_discounts_the_first_invoice(
    new_page, shoot, stripe_live
):
    page = new_page()
    sign_up(page, "Erin", "erin@example.com")

    page.goto("/pricing/")
    page.click("[data-testid=subscribe-ai]")
    # On the simulator's hosted page: a wrong code is refused, LAUNCH takes 20% off $5.00.
    page.fill("input[name=promotion_code]", "NOTACODE")
    page.click("button:has-text('Apply')")
    expect(page.locator("[role=alert]")).to_contain_text("This code (NOTACODE) is invalid.")
    page.fill("input[name=promotion_code]", "launch")
    page.click("button:has-text('Apply')")
    expect(page.locator("[data-discount]")).to_contain_text("LAUNCH")
    expect(page.locator("[data-discount]")).to_contain_text("20% off for 3 months")
    expect(page.locator("body")).to_contain_text("Total due today: $4.00")
    shoot(page, "checkout-promotion-code")
    page.fill("input[name=card_number]", "4242 4242 4242 4242")
    page.click("button:has-text('Pay')")

    expect(page).to_have_url(re.compile(r"/billing/success/\?session_id=cs_"))
    page.click("text=See billing")
    expect(page.locator("[data-testid=status]")).to_have_text("Active")
    expect(page.locator("[data-testid=discount]")).to_contain_text("Launch offer")
    expect(page.locator("[data-testid=discount]")).to_contain_text("20% off for 3 months, until")
    expect(page.locator("[data-testid=payments]")).to_contain_text("$4")
    expect(page.locator("[data-testid=payment-saved]")).to_have_text("$1 saved")
    expect(page.locator("[data-testid=upcoming]")).to_contain_text("Discount: Launch offer")
    shoot(page, "billing-discount")
