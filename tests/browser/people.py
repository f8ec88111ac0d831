"""What a person does on every browser flow before the part under test: sign up, log in."""

import re

from playwright.sync_api import expect

from tests.conftest import PASSWORD


def sign_up(page, name: str, email: str, *, here: bool = False) -> None:
    """Sign up on /signup/, or on the form the page already shows (`here`: an invitation's)."""
    if not here:
        page.goto("/signup/")
    page.fill("#id_name", name)
    page.fill("#id_email", email)
    page.fill("#id_password", "a-long-enough-pass")
    page.click("button:has-text('Sign up')")


def log_in(page, email: str, password: str = PASSWORD) -> None:
    page.goto("/login/")
    page.fill("#id_username", email)
    page.fill("#id_password", password)
    page.click("button:has-text('Log in')")
    expect(page).to_have_url(re.compile(r"/o/"))
