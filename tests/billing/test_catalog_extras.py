"""The catalog's examples from the specification: a custom-domains feature, a training package,
and the short lists of selling points products and credit packages carry to their pages."""

import tomllib

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from billing.catalog import DEFAULT_PATH, CatalogError, catalog_apply, parse_catalog
from billing.models import Addon, PlanEntitlement, Product
from common.errors import ServiceError
from credits import services as credit_services
from credits.models import CreditPackage

pytestmark = pytest.mark.django_db


@pytest.fixture
def raw():
    with open(DEFAULT_PATH, "rb") as handle:
        return tomllib.load(handle)


def test_the_shipped_catalog_has_custom_domains_and_a_training_package():
    assert not PlanEntitlement.objects.get(plan__key="free", feature__key="custom_domains").enabled
    assert PlanEntitlement.objects.get(plan__key="pro_monthly", feature__key="custom_domains").enabled
    training = Addon.objects.get(key="training_package")
    assert (training.kind, training.unit_amount, training.is_active) == ("one_time", 49_900, True)
    assert Product.objects.get(key="pro").bullets[0] == "14-day free trial"


def test_it_reads_a_product_s_bullets_and_applies_a_change(raw):
    raw["products"]["free"]["bullets"] = ["  No card needed ", "Two projects"]
    lines = catalog_apply(parse_catalog(raw))
    assert "~ product free: bullets: [] → ['No card needed', 'Two projects']" in lines
    assert Product.objects.get(key="free").bullets == ["No card needed", "Two projects"]


@pytest.mark.parametrize(
    ("bullets", "problem"),
    [
        ("Cancel any time", "product 'free' bullets: must be a list of short texts"),
        (["ok", 5], "product 'free' bullets: bullet 2 must be some text"),
        (["x" * 81], "product 'free' bullets: bullet 1 is longer than 80 characters"),
        ([f"b{i}" for i in range(7)], "product 'free' bullets: at most 6 bullets"),
    ],
)
def test_it_names_bad_bullets_and_writes_nothing(raw, bullets, problem):
    raw["products"]["free"]["bullets"] = bullets
    with pytest.raises(CatalogError) as error:
        parse_catalog(raw)
    assert problem in error.value.problems


def test_the_admin_refuses_bad_bullets_too():
    product = Product.objects.get(key="pro")
    product.bullets = ["fine", ""]
    with pytest.raises(ValidationError, match="bullet 2 must be some text"):
        product.full_clean()
    package = CreditPackage(code="p", name="P", credits=10, unit_amount=100, bullets={"not": "a list"})
    with pytest.raises(ValidationError, match="must be a list of short texts"):
        package.full_clean()


def test_the_pricing_page_shows_a_product_s_bullets(client):
    body = client.get(reverse("pricing")).content.decode()
    assert 'data-testid="bullets-pro"' in body and "<li>1,000 credits every month</li>" in body
    assert "Training package" in body


def test_the_credits_page_shows_a_package_s_bullets(client_for, org, member):
    credit_services.credits_seed_packages()
    credit_services.credit_package_create(
        code="starter", name="Starter", credits=500, unit_amount=500, bullets=["Good for a first test"]
    )
    body = client_for(member).get(reverse("credits", args=[org.slug])).content.decode()
    assert "<li>Good for a first test</li>" in body
    assert "<li>5,000 bonus credits</li>" in body  # pack-50's default bullets


def test_a_package_with_bad_bullets_is_refused():
    with pytest.raises(ServiceError) as refused:
        credit_services.credit_package_create(
            code="starter", name="Starter", credits=500, unit_amount=500, bullets=["y" * 100]
        )
    assert (refused.value.code, refused.value.field) == ("invalid_bullets", "bullets")
    assert not CreditPackage.objects.filter(code="starter").exists()
