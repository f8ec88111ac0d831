import re

import pytest
from playwright.sync_api import expect

from teams.models import Membership, Organization, Role
from tests.browser.people import sign_up

pytestmark = pytest.mark.django_db(transaction=True)


def test_sign_up_create_an_org_invite_and_accept_in_a_second_browser(new_page, shoot):
    alice = new_page()
    alice.goto("/")
    shoot(alice, "landing")
    alice.click("text=Create an account")
    sign_up(alice, "Alice Anders", "alice@example.com", here=True)
    expect(alice.locator("h1")).to_have_text("Alice Anders's workspace")

    alice.click("[data-testid=org-switcher] summary")
    alice.click("text=+ New organization")
    alice.fill("#id_name", "Rocket Labs")
    alice.click("button:has-text('Create organization')")
    expect(alice).to_have_url(re.compile(r"/o/rocket-labs/members/$"))

    alice.fill("#id_email", "bob@example.com")
    alice.select_option("#id_role", "admin")
    alice.click("button:has-text('Send invitation')")
    row = alice.locator("tr[data-invitation='bob@example.com']")
    expect(row).to_be_visible()  # swapped in by htmx, without a page load
    expect(alice.locator("#messages")).to_contain_text("Invitation sent to bob@example.com")
    shoot(alice, "members")
    invite_link = row.locator("[data-testid=invite-link]").get_attribute("href")

    bob = new_page()
    bob.goto(invite_link)
    expect(bob.locator("h1")).to_have_text("Join Rocket Labs")
    bob.click("text=Create an account")
    expect(bob.locator("#id_email")).to_have_value("bob@example.com")
    sign_up(bob, "Bob Brown", "bob@example.com", here=True)
    expect(bob.locator("h1")).to_have_text("Join Rocket Labs")
    bob.click("button:has-text('Accept invitation')")
    expect(bob).to_have_url(re.compile(r"/o/rocket-labs/$"))
    expect(bob.locator("#messages")).to_contain_text("You joined Rocket Labs")

    alice.reload()
    expect(alice.locator("tr[data-member='bob@example.com']")).to_contain_text("Bob Brown")
    org = Organization.objects.get(slug="rocket-labs")
    assert Membership.objects.get(organization=org, user__email="bob@example.com").role == Role.ADMIN


def test_projects_generate_and_api_keys(new_page, shoot):
    page = new_page()
    sign_up(page, "Carol", "carol@example.com")
    page.click("text=New project")
    page.fill("#id_name", "Support copilot")
    page.fill("#id_description", "Draft replies for the help desk.")
    page.click("button:has-text('Create project')")
    expect(page.locator("h1")).to_have_text("Support copilot")

    page.fill("#id_prompt", "Reply to a customer asking about prorated seats")
    page.click("button:has-text('Generate')")
    expect(page.locator("[data-testid=generation]")).to_have_count(1)
    expect(page.locator("#no-generations")).to_have_count(0)
    page.select_option("#id_model", "image")
    page.fill("#id_prompt", "A calm logo for a billing company")
    page.click("button:has-text('Generate')")
    expect(page.locator("[data-testid=generation] svg")).to_have_count(1)
    page.reload()
    expect(page.locator("[data-testid=generation]")).to_have_count(2)
    shoot(page, "project")

    page.click("nav >> text=API keys")
    page.fill("#id_name", "production server")
    page.check("input[value='credits:write']")
    page.click("button:has-text('Create key')")
    secret = page.locator("[data-testid=new-key] .secret").inner_text()
    assert secret.startswith("tly_")
    expect(page.locator("[data-testid=key-scopes]").first).to_have_text("read credits:write")
    shoot(page, "api-keys")
    page.reload()
    expect(page.locator("[data-testid=new-key]")).to_have_count(0)
    expect(page.locator("body")).not_to_contain_text(secret)
