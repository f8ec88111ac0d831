"""axe-core on Tally's checkout start and return pages, the admin pages staff use and the styled
error pages: no serious or critical violation and no horizontal overflow, at 390 px and 1280 px.
(The simulator's hosted checkout page stands in for Stripe's and is not Tally's to check.)"""

import re

import pytest
from django.test import RequestFactory
from django.urls import reverse
from playwright.sync_api import expect

from billing.models import Plan
from tests.browser.axe import assert_accessible
from tests.browser.conftest import WORLD_PASSWORD
from tests.browser.people import log_in, sign_up
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

VIEWPORTS = [{"width": 390, "height": 844}, {"width": 1280, "height": 800}]


def each_viewport(page, url: str, name: str, status: int = 200) -> None:
    for viewport in VIEWPORTS:
        page.set_viewport_size(viewport)
        response = page.goto(url)
        assert response.status == status, f"{name}: {response.status}"
        assert_accessible(page, f"{name} at {viewport['width']}px")


def test_the_checkout_start_and_return_pages(new_page, stripe_live):
    page = new_page()
    sign_up(page, "Dana", "dana@example.com")
    expect(page).to_have_url(re.compile(r"/o/"))
    slug = re.search(r"/o/([^/]+)/", page.url).group(1)
    billing = reverse("billing", args=[slug])
    each_viewport(page, billing, "the plan picker on the billing page (checkout starts here)")
    each_viewport(page, reverse("pricing"), "the pricing page")

    page.set_viewport_size(VIEWPORTS[1])
    page.click("[data-testid=subscribe-ai]")
    page.fill("input[name=card_number]", "4242 4242 4242 4242")
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/billing/success/\?session_id=cs_"))
    expect(page.locator("[data-testid=checkout-status] h1")).to_contain_text("You're on")
    each_viewport(page, page.url, "the checkout's return page")
    each_viewport(page, billing + "?checkout=cancelled", "the page a cancelled checkout returns to")
    each_viewport(page, reverse("billing_success", args=[slug]), "a return page without a session", 400)


def test_the_admin_pages_staff_use(new_page, stripe_live):
    staff = UserFactory(email="sam@example.com", is_staff=True, is_superuser=True)
    staff.set_password("a-long-enough-pass")
    staff.save()
    page = new_page()
    page.goto(reverse("admin:login"))
    page.fill("#id_username", staff.email)
    page.fill("#id_password", "a-long-enough-pass")
    page.click("input[type=submit]")
    expect(page).to_have_url(re.compile(r"/admin/$"))
    team = Plan.objects.get(key="team_monthly")
    for url, name in [
        (reverse("admin:index"), "the admin home"),
        (reverse("admin:billing_plan_changelist"), "the plans list"),
        (reverse("admin:billing_plan_change", args=[team.pk]), "a plan's change form, tiers as rows"),
        (reverse("admin:credits_creditaccount_changelist"), "the credit accounts list"),
        (reverse("admin:teams_organization_changelist"), "the organizations list"),
    ]:
        each_viewport(page, url, name)


def test_the_styled_error_pages(new_page, world):
    from django.conf import settings
    from django.urls import get_resolver

    org, _, member = world
    page = new_page()
    log_in(page, member.email, WORLD_PASSWORD)
    each_viewport(page, reverse("api_keys", args=[org.slug]), "the 403 page", 403)
    each_viewport(page, "/o/no-such-org/", "the 404 page", 404)
    # The 500 page as Django serves it (its handler, no context), fulfilled at a path of the
    # live server so its stylesheet loads as it would.
    callback = get_resolver(settings.ROOT_URLCONF).resolve_error_handler(500)
    body = callback(RequestFactory().get("/")).content.decode()
    page.route(
        "**/server-error/", lambda route: route.fulfill(status=500, body=body, content_type="text/html")
    )
    each_viewport(page, "/server-error/", "the 500 page", 500)
