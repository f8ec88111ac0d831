"""Stripe Tax from the catalog to the invoice: each price's tax behaviour, the address and VAT
number collected at Checkout or on the billing page, and the tax lines people read."""

import copy
import tomllib

import pytest
import requests
from django.urls import reverse

from billing import subscriptions
from billing.catalog import DEFAULT_PATH, CatalogError, catalog_push, parse_catalog
from billing.gateway.client import stripe_client
from billing.gateway.customers import customer_ensure
from billing.models import BillingProfile, Payment, Plan
from teams.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def taxed(settings):
    settings.USE_STRIPE_TAX = True


def test_the_catalog_gives_each_price_its_tax_behavior():
    with open(DEFAULT_PATH, "rb") as handle:
        raw = tomllib.load(handle)
    assert Plan.objects.get(key="pro_monthly").tax_behavior == "exclusive"
    data = copy.deepcopy(raw)
    data["products"]["ai"]["plans"][0]["tax_behavior"] = "inclusive"
    plans = parse_catalog(data).plans
    assert (plans["ai_monthly"]["tax_behavior"], plans["ai_yearly"]["tax_behavior"]) == (
        "inclusive",
        "exclusive",
    )
    data["tax_behavior"] = "sometimes"
    with pytest.raises(CatalogError) as error:
        parse_catalog(data)
    assert "tax_behavior: must be one of exclusive, inclusive" in error.value.problems[0]


def test_prices_are_pushed_with_their_tax_behavior(stripe_sim):
    Plan.objects.filter(key="ai_monthly").update(tax_behavior="inclusive")
    catalog_push()
    client = stripe_client()
    item = Plan.objects.get(key="ai_monthly").line_items.get()
    assert client.v1.prices.retrieve(item.stripe_price_id).tax_behavior == "inclusive"
    other = Plan.objects.get(key="ai_yearly").line_items.get()
    assert client.v1.prices.retrieve(other.stripe_price_id).tax_behavior == "exclusive"
    assert catalog_push() == []
    # A changed behaviour is a new price (Stripe's prices never change): the old one is archived.
    Plan.objects.filter(key="ai_monthly").update(tax_behavior="exclusive")
    lines = catalog_push()
    assert any(line.startswith("~ stripe price tally:ai_monthly:base") for line in lines)


def test_checkout_collects_the_address_and_vat_number_when_tax_is_on(stripe_sim, taxed, org, owner):
    catalog_push()
    url = subscriptions.checkout_start(organization=org, plan=Plan.objects.get(key="ai_monthly"), actor=owner)
    session = stripe_client().v1.checkout.sessions.retrieve(url.rsplit("/", 1)[-1])
    assert session.automatic_tax.enabled is True
    assert session.billing_address_collection == "required"
    assert session.tax_id_collection.enabled is True


def test_checkout_without_tax_asks_for_no_address(stripe_sim, org, owner):
    catalog_push()
    url = subscriptions.checkout_start(organization=org, plan=Plan.objects.get(key="ai_monthly"), actor=owner)
    session = stripe_client().v1.checkout.sessions.retrieve(url.rsplit("/", 1)[-1])
    assert session.automatic_tax.enabled is False and session.billing_address_collection is None


def test_the_pricing_page_says_plus_tax_or_including_tax(client, stripe_sim, taxed):
    Plan.objects.filter(key="ai_monthly").update(tax_behavior="inclusive")
    html = client.get(reverse("pricing")).content.decode()
    assert 'data-testid="tax-ai">incl. tax' in html
    assert 'data-testid="tax-pro">+ tax' in html


# --- Through Checkout and webhooks, to the billing page --------------------------------------------


def _pay(url: str, **fields) -> requests.Response:
    data = {"card_number": "4242424242424242", "email": "alice@example.com", **fields}
    return requests.post(url, data=data, allow_redirects=False, timeout=30)


def _bought(world, client_for, org, owner, **fields):
    url = subscriptions.checkout_start(organization=org, plan=Plan.objects.get(key="ai_monthly"), actor=owner)
    assert _pay(url, **fields).status_code == 303
    payment = Payment.objects.get(organization=org)
    billing = client_for(owner).get(reverse("billing", args=[org.slug])).content.decode()
    upcoming = client_for(owner).get(reverse("billing_upcoming", args=[org.slug])).content.decode()
    return payment, billing, upcoming


@pytest.mark.django_db(transaction=True)
def test_an_exclusive_price_has_tax_added(stripe_world, client_for, org, owner, settings):
    # AI Access, $5.00 excluding tax, to Germany (19%): 500 + 95 = 595.
    settings.USE_STRIPE_TAX = True
    payment, billing, upcoming = _bought(stripe_world, client_for, org, owner, country="DE", city="Berlin")
    assert (payment.amount_paid, payment.amount_tax) == (595, 95)
    assert "$0.95 tax" in billing
    profile = BillingProfile.objects.get(organization=org)
    assert (profile.country, profile.city, profile.vat_number) == ("DE", "Berlin", "")
    assert "VAT 19% (DE)" in upcoming and "$5.95" in upcoming


@pytest.mark.django_db(transaction=True)
def test_an_inclusive_price_has_the_tax_inside(stripe_world, client_for, org, owner, settings):
    # $5.00 including French VAT (20%): 500 x 20/120 = 83.33, so 83 of it is tax.
    settings.USE_STRIPE_TAX = True
    Plan.objects.filter(key="ai_monthly").update(tax_behavior="inclusive")
    catalog_push()
    payment, billing, upcoming = _bought(stripe_world, client_for, org, owner, country="FR")
    assert (payment.amount_paid, payment.amount_tax) == (500, 83)
    assert "incl. VAT 20% (FR)" in upcoming and "$5<" in upcoming.replace("$5.00", "$5")


@pytest.mark.django_db(transaction=True)
def test_an_eu_business_is_reverse_charged(stripe_world, client_for, org, owner, settings):
    settings.USE_STRIPE_TAX = True
    payment, billing, upcoming = _bought(
        stripe_world,
        client_for,
        org,
        owner,
        country="DE",
        business_name="Acme GmbH",
        tax_id="DE123456789",
    )
    assert (payment.amount_paid, payment.amount_tax) == (500, 0)
    profile = BillingProfile.objects.get(organization=org)
    assert (profile.business_name, profile.vat_number, profile.vat_status) == (
        "Acme GmbH",
        "DE123456789",
        "verified",
    )
    assert profile.reverse_charged
    assert 'data-testid="reverse-charge"' in billing
    assert "Reverse charge" in upcoming


# --- The billing page's billing details ----------------------------------------------------------


def test_the_billing_details_are_saved_on_the_stripe_customer(
    stripe_sim, taxed, client_for, org, owner, django_capture_on_commit_callbacks
):
    browser = client_for(owner)
    url = reverse("billing_details", args=[org.slug])
    with django_capture_on_commit_callbacks(execute=True):  # pushed to Stripe after the commit
        response = browser.post(url, {"country": "NL", "city": "Amsterdam", "vat_number": "nl 123456789 b01"})
    assert response.status_code == 302
    profile = BillingProfile.objects.get(organization=org)
    assert (profile.country, profile.vat_number) == ("NL", "NL123456789B01")
    remote = stripe_client().v1.customers.retrieve(customer_ensure(organization=org), {"expand": ["tax_ids"]})
    assert remote.address.country == "NL" and [t.value for t in remote.tax_ids.data] == ["NL123456789B01"]
    assert AuditEvent.objects.filter(organization=org, action="billing.details_updated").count() == 1
    # A new number replaces the old one.
    with django_capture_on_commit_callbacks(execute=True):
        browser.post(url, {"country": "DE", "vat_number": "DE123456789"})
    remote = stripe_client().v1.customers.retrieve(remote.id, {"expand": ["tax_ids"]})
    assert [t.value for t in remote.tax_ids.data] == ["DE123456789"]


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"country": "DE", "vat_number": "DE12"}, "not the format of a VAT number of DE"),
        ({"country": "FR", "vat_number": "DE123456789"}, "does not go with an address in FR"),
        ({"country": "DE", "vat_number": "123456789"}, "starts with its country"),
        ({"country": "ZZ"}, "Choose the country"),
    ],
)
def test_bad_billing_details_change_nothing(stripe_sim, taxed, client_for, org, owner, fields, message):
    response = client_for(owner).post(reverse("billing_details", args=[org.slug]), fields, follow=True)
    assert message in response.content.decode()
    assert not BillingProfile.objects.filter(organization=org).exists()


def test_only_billing_roles_edit_billing_details(stripe_sim, taxed, client_for, org, member, outsider):
    url = reverse("billing_details", args=[org.slug])
    assert client_for(member).post(url, {"country": "DE"}).status_code == 403
    assert client_for(outsider).post(url, {"country": "DE"}).status_code == 404
    assert not BillingProfile.objects.filter(organization=org).exists()
