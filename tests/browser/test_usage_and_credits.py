import pytest
from playwright.sync_api import expect

from billing import metering
from credits import services as credit_services
from teams import services as team_services

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_usage_and_credits_pages(new_page, shoot):
    user = team_services.user_create(email="erin@example.com", password="a-long-enough-pass", name="Erin")
    organization = user.memberships.get().organization
    metering.usage_ingest(
        organization=organization,
        events=[{"id": f"e{i}", "meter": "api_calls", "value": 1} for i in range(120)],
    )
    credit_services.credits_seed_packages()
    credit_services.credits_consume(
        organization=organization, amount=120, idempotency_key="report", action=""
    )

    page = new_page()
    page.goto("/login/")
    page.fill("#id_username", "erin@example.com")
    page.fill("#id_password", "a-long-enough-pass")
    page.click("button:has-text('Log in')")

    page.click("nav >> text=Usage")
    expect(page.locator("[data-testid=meter-api_calls]")).to_contain_text("120")
    expect(page.locator("[data-testid=events]")).to_contain_text("api_calls")
    shoot(page, "usage")

    page.click("nav >> text=Credits")
    expect(page.locator("[data-testid=balance]")).to_contain_text("380")
    expect(page.locator("[data-testid=package]").first).to_be_visible()
    shoot(page, "credits")
