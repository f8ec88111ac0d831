"""A person sees what the next generation costs, generates once the quota is used up and pays
with credits, and finds New project disabled, with a way to upgrade, at the plan's limit."""

import pytest
from playwright.sync_api import expect

from billing import entitlements
from credits import services as credit_services
from credits.models import CreditTransaction
from projects import services as project_services
from teams import services as team_services

pytestmark = pytest.mark.django_db(transaction=True)


def test_costs_are_shown_before_acting(new_page, settings):
    settings.CREDITS_WELCOME_BONUS = 0
    user = team_services.user_create(email="erin@example.com", password="a-long-enough-pass", name="Erin")
    organization = user.memberships.get().organization
    project = project_services.project_create(organization=organization, actor=user, name="Launch")
    entitlements.consume(organization, "ai_generations", 10, idempotency_key="used-up")
    credit_services.credits_grant(
        organization=organization, amount=400, source="purchase", idempotency_key="g"
    )

    page = new_page()
    page.goto("/login/")
    page.fill("#id_username", "erin@example.com")
    page.fill("#id_password", "a-long-enough-pass")
    page.click("button:has-text('Log in')")

    page.goto(project.get_absolute_url())
    expect(page.locator("[data-testid=paid-with-credits]")).to_contain_text("400 available")
    expect(page.locator("[data-testid=costs]")).to_contain_text("Image 50 credits per image")
    page.fill("#id_prompt", "A logo for the launch")
    page.select_option("#id_model", "image")
    page.click("button:has-text('Generate')")
    expect(page.locator("[data-testid=generation]").first).to_be_visible()
    expect(page.locator("[data-testid=paid-with-credits]")).to_contain_text("350 available")
    assert CreditTransaction.objects.get(type="consumption").amount == -50

    page.goto(f"/o/{organization.slug}/credits/")
    expect(page.locator("[data-testid=prices]")).to_contain_text("50 credits per image")

    project_services.project_create(organization=organization, actor=user, name="Second")  # Free: 2
    page.goto(f"/o/{organization.slug}/projects/")
    expect(page.locator("[data-testid=new-project]")).to_be_disabled()
    expect(page.locator("[data-testid=project-limit]")).to_contain_text("2 of 2 projects used")
    page.click("[data-testid=upgrade-link]")
    page.wait_for_url("**/pricing/")
