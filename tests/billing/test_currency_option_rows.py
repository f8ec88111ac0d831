"""Staff edit a price's other currencies as rows, like its base tiers, and bad rows are refused
with sentences naming the currency, row and field."""

import pytest

from billing.catalog import catalog_push
from billing.gateway.client import stripe_client
from billing.models import CatalogStripeState, PlanLineItem
from tests.billing.test_catalog_admin import form_of, line_item_prefix, pro_url, team_url
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def pushed(stripe_sim):
    catalog_push()
    return stripe_client()


def options_of(client, url: str, key: str) -> tuple[dict, str]:
    data = form_of(client, url)
    return data, f"{line_item_prefix(data, key)}-currency_options"


def save(client, url: str, data: dict, capture):
    data["_save"] = "Save"
    with capture(execute=True):
        return client.post(url, data)


def test_it_shows_another_currencys_tiers_as_rows_and_saves_an_edited_row(
    staff, pushed, django_capture_on_commit_callbacks
):
    old_price = PlanLineItem.objects.get(plan__key="team_monthly", key="seats").stripe_price_id
    data, options = options_of(staff, team_url(), "seats")
    assert "currency_options" not in {k for k, v in data.items() if v.startswith("{")}
    assert data[f"{options}-0-currency"] == "eur"
    assert [data[f"{options}-0-tiers-{row}-up_to"] for row in range(3)] == ["3", "10", ""]
    assert data[f"{options}-0-tiers-1-unit_amount"] == "1400"
    data[f"{options}-0-tiers-1-unit_amount"] = "1300"
    response = save(staff, team_url(), data, django_capture_on_commit_callbacks)
    assert response.status_code == 302, response.content.decode()[:3000]
    item = PlanLineItem.objects.get(plan__key="team_monthly", key="seats")
    assert item.currency_options == {
        "eur": {
            "tiers": [
                {"up_to": 3, "unit_amount": 0, "flat_amount": 0},
                {"up_to": 10, "unit_amount": 1300, "flat_amount": 0},
                {"up_to": None, "unit_amount": 1100, "flat_amount": 0},
            ]
        }
    }
    # A changed amount in any currency is a new price in Stripe, the old one archived.
    assert item.stripe_price_id != old_price
    assert pushed.v1.prices.retrieve(old_price).active is False


def test_it_adds_a_currency_in_the_blank_block_and_removes_one_cleared(
    staff, pushed, django_capture_on_commit_callbacks
):
    data, options = options_of(staff, pro_url(), "base")
    assert (data[f"{options}-0-currency"], data[f"{options}-0-unit_amount"]) == ("eur", "4500")
    assert data[f"{options}-1-currency"] == ""  # the block that adds one
    data[f"{options}-1-currency"] = "GBP"
    data[f"{options}-1-unit_amount"] = "3900"
    response = save(staff, pro_url(), data, django_capture_on_commit_callbacks)
    assert response.status_code == 302, response.content.decode()[:3000]
    item = PlanLineItem.objects.get(plan__key="pro_monthly", key="base")
    assert item.currency_options == {"eur": {"unit_amount": 4500}, "gbp": {"unit_amount": 3900}}

    data, options = options_of(staff, pro_url(), "base")
    data[f"{options}-0-currency"] = data[f"{options}-0-unit_amount"] = ""
    response = save(staff, pro_url(), data, django_capture_on_commit_callbacks)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert PlanLineItem.objects.get(pk=item.pk).currency_options == {"gbp": {"unit_amount": 3900}}


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ({"0-tiers-1-unit_amount": "-5"}, "EUR tiers: Row 2, unit_amount: must not be negative."),
        ({"0-tiers-0-up_to": ""}, "EUR tiers: Row 1, up_to: only the last row is open-ended"),
        (
            {"0-currency": "euro"},
            "the currency must be a three-letter code such as eur, not &#x27;euro&#x27;.",
        ),
        ({"0-unit_amount": "1400"}, "EUR: give a unit amount or tiers, not both."),
        ({"1-currency": "eur", "1-unit_amount": "10"}, "EUR is given twice; give each currency once."),
        ({"0-tiers-0-up_to": "4"}, "the tiers have the same bounds in every currency"),
    ],
    ids=["negative", "open-ended", "code", "both", "twice", "bounds"],
)
def test_a_bad_currency_row_is_refused_in_a_sentence(
    staff, pushed, django_capture_on_commit_callbacks, cells, message
):
    item = PlanLineItem.objects.get(plan__key="team_monthly", key="seats")
    before = item.currency_options
    data, options = options_of(staff, team_url(), "seats")
    data.update({f"{options}-{cell}": value for cell, value in cells.items()})
    response = save(staff, team_url(), data, django_capture_on_commit_callbacks)
    assert response.status_code == 200
    body = response.content.decode()
    assert message in body
    assert 'class="errorlist' in body
    assert PlanLineItem.objects.get(pk=item.pk).currency_options == before
    assert not CatalogStripeState.objects.exists()
