"""Plans priced in several currencies: the catalog, Stripe's currency_options, the pricing page's
choice of currency, and a subscription in euros from checkout to the billing page."""

import copy
import tomllib

import pytest
from django.urls import reverse

from billing import subscriptions
from billing.catalog import DEFAULT_PATH, CatalogError, catalog_push, parse_catalog
from billing.gateway.client import stripe_client
from billing.models import OrgSubscription, Payment, Plan
from common.errors import ServiceError
from tests.billing.conftest import pay_hosted_checkout
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


def test_the_catalog_prices_plans_in_other_currencies():
    assert Plan.objects.get(key="pro_monthly").currencies == ["usd", "eur"]
    assert Plan.objects.get(key="pro_monthly").total(currency="eur") == 4500
    assert Plan.objects.get(key="ai_yearly").total(currency="eur") == 4500
    # Per-seat plans too, tier by tier (and the metered item beside the seats).
    team = Plan.objects.get(key="team_monthly")
    assert team.currencies == ["usd", "eur"]
    assert (team.total(seats=12), team.total(seats=12, currency="eur")) == (12_900, 7 * 1_400 + 2 * 1_100)
    assert Plan.objects.get(key="team_yearly").currencies == ["usd", "eur"]
    platform = Plan.objects.get(key="platform_monthly")
    assert platform.total(seats=7, currency="eur") == 4_500 + 2 * 900


@pytest.mark.parametrize(
    "option, problem",
    [
        ({"usd": {"unit_amount": 1}}, "another currency than the catalog's"),
        ({"eur": {"unit_amount": -5}}, "unit_amount is negative"),
        ({"eur": {"tiers": [{"unit_amount": 5}]}}, "tiers in every currency, or in none"),
        ({"eur": {"price": 5}}, "{ unit_amount = ... } or { tiers = [...] }"),
    ],
)
def test_bad_currency_options_are_refused(option, problem):
    with open(DEFAULT_PATH, "rb") as handle:
        raw = tomllib.load(handle)
    data = copy.deepcopy(raw)
    data["products"]["ai"]["plans"][0]["line_items"][0]["currency_options"] = option
    with pytest.raises(CatalogError) as error:
        parse_catalog(data)
    assert any(
        p.startswith("plan 'ai_monthly' line_items[0] currency_options") and problem in p
        for p in error.value.problems
    )


def test_prices_go_to_stripe_with_their_currency_options(stripe_sim):
    catalog_push()
    item = Plan.objects.get(key="pro_monthly").line_items.get()
    price = stripe_client().v1.prices.retrieve(item.stripe_price_id, {"expand": ["currency_options"]})
    assert (price.currency, price.unit_amount, price.currency_options["eur"].unit_amount) == (
        "usd",
        4900,
        4500,
    )
    assert catalog_push() == []


def test_the_pricing_page_shows_the_chosen_currency_and_remembers_it(client, stripe_sim):
    html = client.get(reverse("pricing") + "?currency=eur").content.decode()
    assert 'data-testid="currency-eur"' in html
    assert "€45" in html and "€4.50" in html  # Pro and AI Access in euros
    # Per-seat plans too, at the seat count shown (five: two paid seats of Team at €14).
    assert '<span class="amount">€28</span> <small>/ month for 5 seats</small>' in html
    seats = client.get(reverse("pricing_seats"), {"plan": "team_monthly", "seats": 12, "currency": "eur"})
    assert "€120" in seats.content.decode() and "$" not in seats.content.decode()
    again = client.get(reverse("pricing")).content.decode()
    assert "€45" in again


def test_the_visitors_language_picks_the_default_currency(client, stripe_sim):
    html = client.get(reverse("pricing"), HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9").content.decode()
    assert "€45" in html
    html = client.get(reverse("pricing"), HTTP_ACCEPT_LANGUAGE="en-US").content.decode()
    assert "$49" in html


def test_a_plan_is_sold_only_in_its_currencies(stripe_sim, org, owner):
    catalog_push()
    with pytest.raises(ServiceError) as error:
        subscriptions.checkout_start(
            organization=org, plan=Plan.objects.get(key="team_monthly"), actor=owner, currency="gbp"
        )
    assert error.value.code == "currency_unavailable"


@pytest.mark.django_db(transaction=True)
def test_a_subscription_in_euros_end_to_end(stripe_world, client_for, org, owner):
    browser = client_for(owner)
    browser.get(reverse("pricing") + "?currency=eur")
    response = browser.post(
        reverse("billing_checkout", args=[org.slug]), {"plan": "ai_monthly", "currency": "eur"}
    )
    session = stripe_client().v1.checkout.sessions.retrieve(response["Location"].rsplit("/", 1)[-1])
    assert (session.currency, session.amount_total) == ("eur", 450)
    assert pay_hosted_checkout(response["Location"]).status_code == 303
    assert OrgSubscription.objects.get(organization=org).status == "active"
    payment = Payment.objects.get(organization=org)
    assert (payment.currency, payment.amount_paid) == ("eur", 450)
    billing = browser.get(reverse("billing", args=[org.slug])).content.decode()
    assert "€4.50" in billing
    upcoming = browser.get(reverse("billing_upcoming", args=[org.slug])).content.decode()
    assert "€4.50" in upcoming
    # The organization now pays in euros: the pricing page stays in euros, and so does checkout.
    assert subscriptions.billing_currency(org) == "eur"
    html = browser.get(reverse("pricing") + "?currency=usd").content.decode()
    assert 'data-testid="currency-usd"' not in html


def test_a_promotion_code_is_shown_in_the_chosen_currency(client, stripe_sim):
    catalog_push()
    html = client.get(reverse("pricing") + "?currency=eur&promo=LAUNCH").content.decode()
    # AI Access at €4.50, 20% off: €3.60 a month for 3 months.
    assert "€3.60 / month for 3 months" in html


@pytest.mark.django_db(transaction=True)
def test_a_per_seat_subscription_in_euros_end_to_end(stripe_world, client_for, org, owner):
    for _ in range(4):
        MembershipFactory(organization=org)  # five seats: three free, two at €14
    browser = client_for(owner)
    response = browser.post(
        reverse("billing_checkout", args=[org.slug]), {"plan": "team_monthly", "currency": "eur"}
    )
    session = stripe_client().v1.checkout.sessions.retrieve(response["Location"].rsplit("/", 1)[-1])
    assert (session.currency, session.amount_total) == ("eur", 2 * 1_400)
    assert pay_hosted_checkout(response["Location"]).status_code == 303
    local = OrgSubscription.objects.get(organization=org)
    assert (local.status, local.seats) == ("active", 5)
    payment = Payment.objects.get(organization=org)
    assert (payment.currency, payment.amount_paid) == ("eur", 2_800)
    assert "€28" in browser.get(reverse("billing", args=[org.slug])).content.decode()
