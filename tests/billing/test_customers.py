import pytest
from djstripe.models import Customer

from billing import selectors
from billing.gateway.client import stripe_client
from billing.gateway.customers import customer_ensure

pytestmark = pytest.mark.django_db


def test_it_creates_one_customer_per_organization(stripe_sim, org, owner):
    first = customer_ensure(organization=org)
    assert customer_ensure(organization=org) == first
    remote = stripe_client().v1.customers.retrieve(first)
    assert remote.email == owner.email
    assert remote.metadata["tally_org"] == org.slug
    assert Customer.objects.get(id=first).subscriber == org
    assert selectors.organization_for_customer(first) == org


def test_a_retried_creation_makes_no_second_customer(stripe_sim, org, owner):
    first = customer_ensure(organization=org)
    Customer.objects.all().delete()  # as if the first attempt died before recording it
    assert customer_ensure(organization=org) == first
    assert len(stripe_client().v1.customers.list({"limit": 10}).data) == 1
