import re

import pytest
from playwright.sync_api import expect

from billing import catalog
from billing.gateway.client import stripe_client
from tests.billing.test_seats import seat_quantity, subscribe_seats, team
from tests.browser.people import log_in
from tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_invite_with_the_seat_preview_accept_and_the_billing_page_counts_the_seat(
    new_page, shoot, stripe_sim
):
    catalog.catalog_push()
    client = stripe_client()
    org = OrganizationFactory(name="Rocket Labs", slug="rocket-labs")
    owner = team(org, 3)
    sub, _ = subscribe_seats(org, "team_monthly")

    alice = new_page()
    log_in(alice, owner.user.email)
    alice.goto("/o/rocket-labs/members/")
    line = alice.locator("[data-testid=seat-line]")
    expect(line).to_contain_text("Adding a member: +$15/month")
    expect(line).to_contain_text("(seat 4, tier $15)")
    expect(alice.locator("[data-testid=seat-invoice]")).to_contain_text("next invoice")
    alice.fill("#id_email", "dora@example.com")
    alice.click("button:has-text('Send invitation')")
    row = alice.locator("tr[data-invitation='dora@example.com']")
    expect(row).to_be_visible()
    expect(alice.locator("[data-testid=seat-line]")).to_contain_text("(seat 4, tier $15)")
    shoot(alice, "members-seats")
    invite_link = row.locator("[data-testid=invite-link]").get_attribute("href")

    dora = new_page()
    dora.goto(invite_link)
    dora.click("text=Create an account")
    dora.fill("#id_name", "Dora Diaz")
    dora.fill("#id_password", "a-long-enough-pass")
    dora.click("button:has-text('Sign up')")
    dora.click("button:has-text('Accept invitation')")
    expect(dora).to_have_url(re.compile(r"/o/rocket-labs/$"))

    alice.goto("/o/rocket-labs/billing/")
    expect(alice.locator("[data-testid=seats]")).to_have_text("4 used · 4 paid")
    # Seat 4 from 1 May ($15) and the whole of April for it, prorated on the clock's first day.
    expect(alice.locator("[data-testid=upcoming]")).to_contain_text("Due 1 May 2026$30")
    shoot(alice, "billing-seats")
    assert seat_quantity(client, sub) == 4
