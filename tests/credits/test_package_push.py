"""A credit package saved in the admin reaches Stripe like the rest of the catalog."""

import pytest
from django.urls import reverse

from billing.gateway.client import stripe_client
from billing.models import CatalogStripeState
from credits.models import CreditPackage
from tests.billing.test_catalog_admin import form_of
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_it_pushes_a_changed_package_amount_as_a_new_price(
    client, stripe_sim, django_capture_on_commit_callbacks
):
    package = CreditPackage.objects.create(code="pack-50", name="50 credits", credits=50, unit_amount=500)
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    url = reverse("admin:credits_creditpackage_change", args=[package.pk])
    data = form_of(client, url)
    data.update({"unit_amount": "700", "_save": "Save"})
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(url, data).status_code == 302
    [price] = stripe_client().v1.prices.list({"lookup_keys": ["credits_pack-50"]}).data
    assert price.unit_amount == 700
    assert CreditPackage.objects.get(pk=package.pk).stripe_price_id == price.id
    state = CatalogStripeState.objects.get(kind="credit_package", object_id=package.pk)
    assert state.status == "in_sync"
    listing = client.get(reverse("admin:credits_creditpackage_changelist")).content.decode()
    assert "In sync" in listing


def test_it_refuses_a_negative_amount_naming_the_field(client):
    package = CreditPackage.objects.create(code="pack-10", name="10 credits", credits=10, unit_amount=100)
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    url = reverse("admin:credits_creditpackage_change", args=[package.pk])
    data = form_of(client, url)
    data.update({"unit_amount": "-5", "_save": "Save"})
    response = client.post(url, data)
    assert response.status_code == 200 and "errorlist" in response.content.decode()
    assert CreditPackage.objects.get(pk=package.pk).unit_amount == 100
    assert not CatalogStripeState.objects.exists()
