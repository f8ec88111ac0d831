"""Two-factor sign-in as a person clicks through it: set up with the secret the page shows, sign
out, sign in with a code from that secret, then with a recovery code."""

import base64
import re
import time

import pytest
from playwright.sync_api import expect

from teams import totp
from tests.browser.people import sign_up

pytestmark = pytest.mark.django_db(transaction=True)


def _code_from(grouped: str, when: float) -> str:
    text = grouped.replace(" ", "")
    secret = base64.b32decode(text + "=" * (-len(text) % 8))
    return totp.hotp(secret, totp.step_at(when))


def _clear_of_a_step_change(margin: float = 5.0) -> None:
    """Waits out the last seconds of a time step, so that a code chosen relative to the test's
    clock is still inside the server's window when the form arrives there."""
    left = totp.STEP - time.time() % totp.STEP
    if left < margin:
        time.sleep(left + 0.1)


def _password_step(page, email: str) -> None:
    page.goto("/login/")
    page.fill("#id_username", email)
    page.fill("#id_password", "a-long-enough-pass")
    page.click("button:has-text('Log in')")
    expect(page).to_have_url(re.compile(r"/login/two-factor/$"))


def _log_out(page) -> None:
    page.click("[data-testid=user-menu] summary")
    page.click("button:has-text('Log out')")
    expect(page.locator("header a:has-text('Log in')")).to_be_visible()


def test_enrol_then_sign_in_with_a_code_and_with_a_recovery_code(new_page, shoot):
    page = new_page()
    sign_up(page, "Tess", "tess@example.com")
    expect(page).to_have_url(re.compile(r"/o/"))
    page.click("[data-testid=user-menu] summary")
    page.click("a:has-text('Two-factor sign-in')")
    page.click("button:has-text('Set up two-factor sign-in')")
    grouped = page.locator("[data-testid=totp-secret]").inner_text()
    assert re.fullmatch(r"([A-Z2-7]{4} )+[A-Z2-7]{4}", grouped)
    expect(page.locator("[data-testid=otpauth-uri]")).to_contain_text("otpauth://totp/Tally")
    # A code of the step before: the one of now stays unused for the sign-in below. Away from a
    # step change, or the server's step would be two past it.
    _clear_of_a_step_change()
    page.fill("#id_code", _code_from(grouped, time.time() - totp.STEP))
    page.click("button:has-text('Turn on')")
    # The page with the codes is waited for; reading them at once could read the form's page.
    expect(page.locator("[data-testid=recovery-codes] code")).to_have_count(10)
    codes = page.locator("[data-testid=recovery-codes] code").all_inner_texts()
    shoot(page, "two-factor-recovery-codes")
    page.click("a:has-text('I saved them')")
    expect(page.locator("[data-testid=two-factor-status]")).to_contain_text("10 recovery codes left")

    _log_out(page)
    _password_step(page, "tess@example.com")
    page.fill("#id_code", "000000")
    page.click("button:has-text('Verify')")
    expect(page.locator(".errorlist")).to_contain_text("not right")
    _clear_of_a_step_change()
    page.fill("#id_code", _code_from(grouped, time.time()))
    page.click("button:has-text('Verify')")
    expect(page).to_have_url(re.compile(r"/o/"))

    _log_out(page)
    _password_step(page, "tess@example.com")
    page.fill("#id_code", codes[0])
    page.click("button:has-text('Verify')")
    expect(page).to_have_url(re.compile(r"/o/"))
    expect(page.locator("#messages")).to_contain_text("recovery code; 9 left")
