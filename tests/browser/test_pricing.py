import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.django_db(transaction=True)


def test_toggle_the_interval_and_change_the_seat_count(new_page, shoot):
    page = new_page()
    page.goto("/pricing/")
    pro_amount = page.locator("[data-testid=price-pro] .amount")
    expect(pro_amount).to_have_text("$49")

    page.click("text=Yearly")
    expect(pro_amount).to_have_text("$490")
    expect(page.locator("[data-testid=saving-pro]")).to_have_text("Save 17%")
    expect(page).to_have_url(re.compile(r"interval=year"))

    page.click("#plans >> text=Monthly")
    expect(pro_amount).to_have_text("$49")
    # htmx binds the new content's triggers once it has settled; typing before that is lost.
    page.wait_for_function("!document.querySelector('.htmx-settling, .htmx-swapping')")
    team = page.locator("[data-testid=plan-team]")
    seats = page.locator("[data-testid=seats-team]")
    seats.fill("12")
    expect(team.locator("[data-testid=seat-total]")).to_contain_text("$129")
    expect(team.locator("[data-testid=seat-total]")).to_contain_text("Seats 11–12")
    seats.fill("3")
    expect(team.locator("[data-testid=seat-total]")).to_contain_text("$0")
    seats.fill("12")
    expect(team.locator("[data-testid=seat-total]")).to_contain_text("$129")
    shoot(page, "pricing")
