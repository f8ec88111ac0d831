"""Card authentication (3D Secure) as a person clicks through it: Checkout's authentication step
failed then completed, and a renewal confirmed from the banner on the hosted invoice page."""

import re

import pytest
from playwright.sync_api import expect

from billing.models import OrgSubscription
from teams.models import Organization
from tests.billing.test_authentication import ALWAYS, subscribe_through_checkout
from tests.billing.test_lifecycle import past_period_end, world  # noqa: F401
from tests.browser.people import log_in, sign_up

pytestmark = pytest.mark.django_db(transaction=True)


def test_checkout_with_a_card_that_asks_for_authentication(new_page, stripe_live):
    page = new_page()
    sign_up(page, "Erin", "erin@example.com")
    page.goto("/pricing/")
    page.click("[data-testid=subscribe-ai]")

    page.fill("input[name=card_number]", "4000 0027 6000 3184")
    page.click("button[type=submit]")
    expect(page.locator("[data-authentication]")).to_contain_text("confirm the payment of $5.00")
    page.click("button:has-text('Fail authentication')")
    expect(page.locator(".error")).to_contain_text("failed authentication")
    assert not OrgSubscription.objects.filter(organization__slug__startswith="erin").exists()

    page.fill("input[name=card_number]", "4000 0027 6000 3184")
    page.click("button[type=submit]")
    page.click("button:has-text('Complete authentication')")
    expect(page).to_have_url(re.compile(r"/billing/success/\?session_id=cs_"))
    expect(page.locator("[data-testid=checkout-status] h1")).to_contain_text("You're on AI Access (monthly)")
    assert OrgSubscription.objects.get(organization__slug__startswith="erin").status == "active"


def test_a_renewal_is_confirmed_from_the_banner_on_the_hosted_invoice_page(world, new_page, shoot):  # noqa: F811
    stripe, clock, org, owner = world
    subscribe_through_checkout(world, ALWAYS)
    past_period_end(stripe, clock, org)
    assert OrgSubscription.objects.get(organization=org).status == "past_due"

    page = new_page()
    log_in(page, owner.email)
    page.goto(org.get_absolute_url())
    banner = page.locator("[data-testid=billing-banner]")
    expect(banner).to_contain_text("Your bank asks you to confirm a payment")
    shoot(page, "authentication-banner")
    page.click("[data-testid=authenticate-payment]")

    expect(page.locator("[data-authentication]")).to_contain_text("Authenticate this payment")
    page.click("button:has-text('Complete authentication')")
    expect(page.locator(".note")).to_contain_text("Paid")
    expect(page.locator("[data-status]")).to_have_text("paid")

    page.goto(f"/o/{org.slug}/billing/")
    expect(page.locator("[data-testid=status]")).to_have_text("Active")
    expect(page.locator("[data-testid=billing-banner]")).to_have_count(0)


def test_a_card_saved_for_auto_recharge_is_authenticated_on_the_way(new_page, stripe_live):
    page = new_page()
    sign_up(page, "Frank", "frank@example.com")
    org = Organization.objects.get(slug__startswith="frank")
    page.goto(f"/o/{org.slug}/credits/")
    page.click("button:has-text('Save a card for auto-recharge')")

    page.fill("input[name=card_number]", "4000 0025 0000 3155")
    page.click("button[type=submit]")
    expect(page.locator("[data-authentication]")).to_contain_text("Authenticate this card")
    page.click("button:has-text('Fail authentication')")
    expect(page.locator(".error")).to_contain_text("failed authentication")

    page.fill("input[name=card_number]", "4000 0025 0000 3155")
    page.click("button[type=submit]")
    page.click("button:has-text('Complete authentication')")
    expect(page).to_have_url(re.compile(r"/credits/card/\?session_id=cs_"))
    expect(page.locator("[data-testid=card-setup]")).to_contain_text("Card saved (ending 3155)")
