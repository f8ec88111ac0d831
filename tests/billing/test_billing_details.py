"""The billing address, name, email and VAT number are what the Stripe customer (and so its
invoices) carries: saved here, pushed after the commit through the gateway, idempotently."""

import pytest
from django.urls import reverse

from billing import billing_details
from billing.gateway.client import stripe_client
from billing.gateway.customers import customer_ensure
from billing.models import BillingProfile
from teams.models import Organization
from teams.services import organization_update

pytestmark = pytest.mark.django_db


def _customer(org):
    return stripe_client().v1.customers.retrieve(customer_ensure(organization=org), {"expand": ["tax_ids"]})


def test_it_puts_the_address_on_the_stripe_customer_after_the_commit(
    stripe_sim, org, owner, client_for, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as queued:
        profile = billing_details.billing_details_update(
            organization=org,
            actor=owner,
            country="DE",
            business_name="Acme GmbH",
            line1="Hauptstraße 1",
            postal_code="10115",
            city="Berlin",
            vat_number="DE123456789",
        )
    assert profile.push_pending and len(queued) == 1  # nothing sent to Stripe inside the save
    queued[0]()
    remote = _customer(org)
    assert remote.name == "Acme GmbH"
    assert (
        remote.address.line1,
        remote.address.postal_code,
        remote.address.city,
        remote.address.country,
    ) == (
        "Hauptstraße 1",
        "10115",
        "Berlin",
        "DE",
    )
    assert [(t.type, t.value) for t in remote.tax_ids.data] == [("eu_vat", "DE123456789")]
    profile.refresh_from_db()
    assert not profile.push_pending and profile.stripe_tax_id == remote.tax_ids.data[0].id


def test_pushing_twice_changes_nothing_more(stripe_sim, org, owner, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        billing_details.billing_details_update(
            organization=org, actor=owner, country="NL", city="Amsterdam", vat_number="NL123456789B01"
        )
    before = _customer(org)
    billing_details.billing_details_push(organization=org)  # a retried task
    billing_details.billing_details_push(organization=org)
    after = _customer(org)
    assert [t.id for t in after.tax_ids.data] == [t.id for t in before.tax_ids.data]
    assert after.address == before.address and after.address.city == "Amsterdam"


def test_an_edit_back_to_earlier_values_still_reaches_stripe(
    stripe_sim, org, owner, django_capture_on_commit_callbacks
):
    for city in ("Paris", "Lyon", "Paris"):
        with django_capture_on_commit_callbacks(execute=True):
            billing_details.billing_details_update(organization=org, actor=owner, country="FR", city=city)
        assert _customer(org).address.city == city


def test_a_removed_vat_number_leaves_the_customer(stripe_sim, org, owner, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        billing_details.billing_details_update(
            organization=org, actor=owner, country="DE", vat_number="DE123456789"
        )
    with django_capture_on_commit_callbacks(execute=True):
        billing_details.billing_details_update(organization=org, actor=owner, country="DE")
    assert _customer(org).tax_ids.data == []
    assert BillingProfile.objects.get(organization=org).vat_number == ""


def test_a_new_billing_email_reaches_the_customer(stripe_sim, org, owner, django_capture_on_commit_callbacks):
    customer_ensure(organization=org)
    with django_capture_on_commit_callbacks(execute=True):
        organization_update(organization=org, actor=owner, name="Acme", billing_email="invoices@acme.test")
    assert _customer(org).email == "invoices@acme.test"
    assert Organization.objects.get(pk=org.pk).billing_email == "invoices@acme.test"


def test_the_form_saves_and_pushes(stripe_sim, org, owner, client_for, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(owner).post(
            reverse("billing_details", args=[org.slug]),
            {"country": "IE", "line1": "1 Main St", "city": "Dublin"},
        )
    assert response.status_code == 302
    assert _customer(org).address.city == "Dublin"
