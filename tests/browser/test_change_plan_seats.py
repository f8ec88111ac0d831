"""Changing to a prepaid-seat plan: a seat stepper whose price the server computes as the count
changes, and the count chosen is the quantity Stripe bills."""

import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from billing.gateway.client import stripe_client
from billing.models import OrgSubscription, Plan
from billing.models.catalog import SeatMode
from tests.browser.test_shell import log_in

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_seat_stepper_prices_live_and_the_change_bills_the_seats_chosen(new_page, world):
    org, owner, _ = world  # Olivia and Max: two seat holders
    Plan.objects.filter(key="team_monthly").update(seat_mode=SeatMode.PREPAID)
    page = new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(page, owner.email)
    page.goto(reverse("billing_change", args=[org.slug]) + "?plan=team_monthly")
    field = page.locator("#change-seats")
    total = page.locator("[data-testid=seat-total]")
    expect(field).to_have_value("2")
    expect(total).to_contain_text("for 2 seats")

    page.click("button[aria-label='One seat fewer']")  # never below the members
    expect(field).to_have_value("2")
    page.click("button[aria-label='One seat more']")
    page.click("button[aria-label='One seat more']")
    expect(field).to_have_value("4")
    expect(total).to_contain_text("$15 / month for 4 seats")  # seats 1-3 free, then $15
    expect(total).to_contain_text("Seat 4")  # a tier of one seat reads "Seat 4"

    field.fill("1")
    expect(page.locator("[data-testid=seat-error]")).to_contain_text("has 2 members: choose at least 2 seats")
    field.fill("8")
    expect(total).to_contain_text("$75 / month for 8 seats")
    expect(page.locator("[data-testid=seat-error]")).to_have_count(0)
    # Eight seats cost more than Pro: an upgrade, applied now, as the text above the lines says.
    expect(page.locator("#change-price")).to_contain_text("The change applies now")
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1]

    page.click("button:has-text('Confirm')")
    expect(page).to_have_url(re.compile(r"/billing/$"))
    expect(page.locator("#messages")).to_contain_text("Your plan is now Team")
    subscription = OrgSubscription.objects.get(organization=org)
    assert subscription.plan.key == "team_monthly" and subscription.seats == 8
    remote = stripe_client().v1.subscriptions.retrieve(subscription.stripe_subscription_id)
    seat_price = Plan.objects.get(key="team_monthly").seat_item().stripe_price_id
    assert [i.quantity for i in remote["items"].data if i.price.id == seat_price] == [8]
