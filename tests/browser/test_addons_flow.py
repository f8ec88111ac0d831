import re

import pytest
from playwright.sync_api import expect

from billing import catalog, entitlements
from billing.gateway.setup import stripe_webhook_endpoint_ensure
from billing.models import AddonPurchase
from teams.models import Organization

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_subscriber_buys_the_seat_pack_from_the_billing_page(
    new_page, shoot, stripe_sim, live_server, settings
):
    settings.SITE_URL = live_server.url
    catalog.catalog_push()
    stripe_webhook_endpoint_ensure(site_url=live_server.url)

    page = new_page()
    page.goto("/signup/")
    page.fill("#id_name", "Fay")
    page.fill("#id_email", "fay@example.com")
    page.fill("#id_password", "a-long-enough-pass")
    page.click("button:has-text('Sign up')")
    page.goto("/pricing/")
    page.click("[data-testid=subscribe-ai]")
    page.fill("input[name=card_number]", "4242 4242 4242 4242")
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/billing/success/\?session_id=cs_"))
    page.click("text=See billing")
    organization = Organization.objects.get(slug__startswith="fay")
    assert entitlements.check(organization, "team_members", 0).limit == 3

    # The seat pack's card on the billing page: two packs, paid on the hosted Checkout page.
    pack = page.locator("#addon-extra_seats")
    expect(pack).to_contain_text("$99 once")
    pack.locator("input[name=quantity]").fill("2")
    shoot(page, "billing-addons")
    pack.locator("[data-testid=buy-extra_seats]").click()
    expect(page.locator("body")).to_contain_text("$198")
    page.fill("input[name=card_number]", "4242 4242 4242 4242")
    page.click("button[type=submit]")

    expect(page).to_have_url(re.compile(r"/billing/#addons$|/billing/$"))
    expect(page.locator("body")).to_contain_text("2 × Additional Seats (5 pack) is yours")
    purchase = AddonPurchase.objects.get(organization=organization)
    assert (purchase.status, purchase.quantity) == ("granted", 2)
    assert entitlements.check(organization, "team_members", 0).limit == 3 + 10
