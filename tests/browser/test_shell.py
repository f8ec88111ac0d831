"""The app shell at a phone's width and a laptop's: no page wider than the screen, a menu that
opens and closes below the breakpoint, navigation that shows only what the role may open,
styled error pages that say why, and the confirmation after an invitation."""

import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from tests.browser import people
from tests.browser.conftest import WORLD_PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1280, "height": 800}
ANONYMOUS_PAGES = ["landing", "pricing", "login", "signup"]
ORG_PAGES = [
    "dashboard",
    "project_list",
    "billing",
    "credits",
    "usage",
    "members",
    "api_keys",
    "organization_settings",
]


def log_in(page, email: str) -> None:
    people.log_in(page, email, WORLD_PASSWORD)


def overflow(page) -> tuple[int, int]:
    return page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")


def assert_fits(page, name: str) -> None:
    page.wait_for_load_state("networkidle")
    width, viewport = overflow(page)
    assert width <= viewport, f"{name} is {width}px wide in a {viewport}px window"


@pytest.mark.parametrize("viewport", [PHONE, LAPTOP], ids=["390", "1280"])
def test_no_page_is_wider_than_the_window(new_page, shoot, world, viewport):
    org, owner, _ = world
    page = new_page()
    page.set_viewport_size(viewport)
    for name in ANONYMOUS_PAGES:
        page.goto(reverse(name))
        assert_fits(page, name)
    log_in(page, owner.email)
    for name in ORG_PAGES:
        page.goto(reverse(name, args=[org.slug]))
        assert_fits(page, name)
        if viewport is PHONE and name in ("dashboard", "billing", "credits"):
            shoot(page, f"mobile-{name}")


def test_the_menu_opens_and_closes_on_a_phone(new_page, world):
    org, owner, _ = world
    page = new_page()
    page.set_viewport_size(PHONE)
    log_in(page, owner.email)
    nav = page.locator("#primary-nav")
    toggle = page.locator("[data-menu-toggle]")
    expect(nav).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(nav).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    assert_fits(page, "the open menu")
    page.locator("[data-testid=user-menu] summary").click()
    expect(page.locator("[data-testid=user-menu] button:has-text('Log out')")).to_be_in_viewport()
    assert_fits(page, "the open user menu")
    page.locator("[data-testid=org-switcher] summary").click()  # closes the user menu
    expect(page.locator("[data-testid=user-menu] button:has-text('Log out')")).to_be_hidden()
    assert_fits(page, "the open organization switcher")
    nav.locator("text=Billing").click()
    expect(page).to_have_url(re.compile(r"/billing/$"))
    expect(page.locator("h1")).to_have_text("Billing")
    expect(nav).to_be_hidden()
    toggle.click()
    expect(nav).to_be_visible()
    page.keyboard.press("Escape")
    expect(nav).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")


def test_on_a_laptop_the_nav_quota_and_log_out_fit_on_one_line(new_page, world):
    org, owner, _ = world
    page = new_page()
    log_in(page, owner.email)
    page.goto(reverse("dashboard", args=[org.slug]))
    expect(page.locator("[data-menu-toggle]")).to_be_hidden()
    expect(page.locator("#primary-nav")).to_be_visible()
    expect(page.locator("#primary-nav [data-testid=low-quota]")).to_be_visible()
    bar = page.locator(".topbar .inner").bounding_box()
    assert bar["height"] <= 64
    page.locator("[data-testid=user-menu] summary").click()
    logout = page.locator("[data-testid=user-menu] button:has-text('Log out')")
    expect(logout).to_be_visible()
    box = logout.bounding_box()
    assert box["x"] + box["width"] <= 1280
    logout.click()
    expect(page).to_have_url(re.compile(r"/$"))


def test_a_member_sees_only_what_the_role_opens_and_a_styled_403_says_why(new_page, world):
    org, _, member = world
    page = new_page()
    log_in(page, member.email)
    page.goto(reverse("dashboard", args=[org.slug]))
    nav = page.locator("#primary-nav")
    expect(nav.locator("text=Members")).to_be_visible()
    expect(nav.locator("text=API keys")).to_have_count(0)
    expect(nav.locator("text=Settings")).to_have_count(0)

    response = page.goto(reverse("api_keys", args=[org.slug]))
    assert response.status == 403
    expect(page.locator("h1")).to_have_text("You can't open this page")
    expect(page.locator("[data-testid=error-reason]")).to_contain_text("This needs the admin role")
    expect(page.locator("#primary-nav")).to_be_attached()  # inside the app shell
    expect(page.locator("text=Back to the dashboard")).to_be_visible()

    response = page.goto("/o/no-such-org/")
    assert response.status == 404
    expect(page.locator("h1")).to_have_text("Page not found")


def test_an_invitation_shows_its_confirmation(new_page, world):
    org, owner, _ = world
    page = new_page()
    log_in(page, owner.email)
    page.goto(reverse("members", args=[org.slug]))  # a fresh page, with no message showing
    page.fill("#id_email", "nina@example.com")
    page.click("button:has-text('Send invitation')")
    expect(page.locator("tr[data-invitation='nina@example.com']")).to_be_visible()
    confirmation = page.locator("#messages")
    expect(confirmation).to_be_visible()
    expect(confirmation).to_contain_text("Invitation sent to nina@example.com")


def test_the_favicon_is_served(new_page, world):
    page = new_page()
    page.goto("/")
    href = page.locator("link[rel=icon]").get_attribute("href")
    assert page.request.get(href).ok
