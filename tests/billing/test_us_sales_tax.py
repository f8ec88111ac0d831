"""US sales tax in Tally: the billing address carries its state (billing page, Checkout, the Stripe
customer), and the invoice's tax lines name the state, as Stripe's tax rate does."""

import pytest
from django.urls import reverse

from billing.catalog import catalog_push
from billing.gateway.client import stripe_client
from billing.gateway.customers import customer_ensure
from billing.models import BillingProfile, Plan
from tests.billing.test_tax import _bought

pytestmark = pytest.mark.django_db


@pytest.fixture
def taxed(settings):
    settings.USE_STRIPE_TAX = True


def test_the_billing_page_sends_the_state_to_the_stripe_customer(
    stripe_sim, taxed, client_for, org, owner, django_capture_on_commit_callbacks
):
    browser = client_for(owner)
    assert 'name="state"' in browser.get(reverse("billing", args=[org.slug])).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = browser.post(
            reverse("billing_details", args=[org.slug]),
            {
                "country": "US",
                "state": "ny",
                "postal_code": "10001",
                "city": "New York",
                "line1": "1 Broadway",
            },
        )
    assert response.status_code == 302
    profile = BillingProfile.objects.get(organization=org)
    assert (profile.country, profile.state) == ("US", "NY")
    remote = stripe_client().v1.customers.retrieve(customer_ensure(organization=org))
    assert (remote.address.country, remote.address.state, remote.address.postal_code) == ("US", "NY", "10001")
    assert "New York NY US" in browser.get(reverse("billing", args=[org.slug])).content.decode()


@pytest.mark.parametrize("state", ["", "XX"], ids=["missing", "unknown"])
def test_a_us_address_needs_its_state(stripe_sim, taxed, client_for, org, owner, state):
    response = client_for(owner).post(
        reverse("billing_details", args=[org.slug]), {"country": "US", "state": state}, follow=True
    )
    assert "Choose the state of your US billing address" in response.content.decode()
    assert not BillingProfile.objects.filter(organization=org).exists()


@pytest.mark.django_db(transaction=True)
def test_new_york_sales_tax_is_added_to_an_exclusive_price(stripe_world, client_for, org, owner, settings):
    # AI Access, $5.00 excluding tax, to New York (4%): 500 + 20 = 520.
    settings.USE_STRIPE_TAX = True
    payment, billing, upcoming = _bought(
        stripe_world, client_for, org, owner, country="US", state="NY", postal_code="10001", city="New York"
    )
    assert (payment.amount_paid, payment.amount_tax) == (520, 20)
    profile = BillingProfile.objects.get(organization=org)  # mirrored from the customer Checkout saved
    assert (profile.country, profile.state) == ("US", "NY")
    assert "Sales Tax 4% (New York)" in upcoming and "$5.20" in upcoming


@pytest.mark.django_db(transaction=True)
def test_texas_sales_tax_is_inside_an_inclusive_price(stripe_world, client_for, org, owner, settings):
    # $5.00 including Texas sales tax (6.25%): 500 x 6.25/106.25 = 29.41, so 29 of it is tax.
    settings.USE_STRIPE_TAX = True
    Plan.objects.filter(key="ai_monthly").update(tax_behavior="inclusive")
    catalog_push()
    payment, billing, upcoming = _bought(
        stripe_world, client_for, org, owner, country="US", postal_code="75001"
    )  # no state typed: the ZIP code places it in Texas
    assert (payment.amount_paid, payment.amount_tax) == (500, 29)
    assert "incl. Sales Tax 6.25% (Texas)" in upcoming
