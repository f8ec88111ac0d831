"""`@charges_credits` on the sample product's Generate action, in the browser and the API."""

import pytest
from django.urls import reverse

from billing import entitlements
from credits.models import CreditAccount, CreditReservation, CreditTransaction
from projects.generator import generate
from projects.models import Generation
from teams import api_keys
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def project(org):
    """A project of an organization whose monthly generations (Free: 10, then credits) are
    used up, so that every generation here is paid with credits."""
    entitlements.consume(org, "ai_generations", 10, idempotency_key="quota-used-up")
    return ProjectFactory(organization=org)


def _generate(client, org, project, **data):
    return client.post(
        reverse("generation_create", args=[org.slug, project.code]), data, HTTP_HX_REQUEST="true"
    )


def test_a_generation_is_charged_by_model_and_tokens(client_for, org, member, project, fund):
    fund(1000)
    client = client_for(member)
    response = _generate(client, org, project, prompt="Summarise churn", model="gpt-4")
    assert response.status_code == 200 and response["HX-Trigger"] == "credits-changed"
    tokens = generate(model="gpt-4", prompt="Summarise churn").tokens
    charge = CreditTransaction.objects.get(type="consumption")
    assert (charge.action, charge.quantity, charge.amount) == (
        "gpt-4",
        tokens,
        -((tokens * 10 + 999) // 1000),
    )
    _generate(client, org, project, prompt="A logo", model="image")
    assert CreditTransaction.objects.filter(type="consumption").first().amount == -50
    account = CreditAccount.objects.get(organization=org)
    assert account.held == 0 and CreditReservation.objects.filter(status="held").count() == 0


def test_a_refused_generation_costs_nothing(client_for, org, member, project, fund):
    fund(1000)
    response = _generate(client_for(member), org, project, prompt="", model="gpt-4")
    assert not Generation.objects.exists()
    assert response.status_code in (200, 400)
    assert CreditAccount.objects.get(organization=org).balance == 1000
    assert not CreditTransaction.objects.filter(type="consumption").exists()


def test_it_asks_before_using_more_than_half_the_balance(client_for, org, member, project, fund):
    fund(90)
    client = client_for(member)
    asked = _generate(client, org, project, prompt="A logo", model="image")
    assert b'data-testid="credits-confirm"' in asked.content
    assert b'name="confirm_credits"' in asked.content and b'value="A logo"' in asked.content
    assert not Generation.objects.exists()
    done = _generate(client, org, project, prompt="A logo", model="image", confirm_credits="1")
    assert done.status_code == 200 and Generation.objects.count() == 1
    assert CreditAccount.objects.get(organization=org).balance == 40


def test_it_refuses_when_credits_run_out(client_for, org, member, project, fund):
    fund(10)
    client = client_for(member)
    refused = _generate(client, org, project, prompt="A logo", model="image")
    assert b'data-testid="credits-refused"' in refused.content
    page = client.post(
        reverse("generation_create", args=[org.slug, project.code]), {"prompt": "A logo", "model": "image"}
    )
    assert page.status_code == 402
    assert not Generation.objects.exists()


@pytest.fixture
def key_client(api_client, org, owner):
    _, secret = api_keys.api_key_create(organization=org, actor=owner, name="server")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return api_client


def test_the_api_charges_asks_and_refuses(key_client, org, project, fund):
    url = f"/api/v1/projects/{project.code}/generations/"
    fund(90)
    assert key_client.post(url, {"prompt": "Hi", "model": "gpt-4"}, format="json").status_code == 201
    assert CreditAccount.objects.get(organization=org).balance == 89
    asked = key_client.post(url, {"prompt": "A logo", "model": "image"}, format="json")
    assert (asked.status_code, asked.json()["code"], asked.json()["estimate"]) == (
        409,
        "confirmation_required",
        50,
    )
    done = key_client.post(
        url, {"prompt": "A logo", "model": "image"}, format="json", HTTP_X_CONFIRM_CREDITS="true"
    )
    assert done.status_code == 201
    refused = key_client.post(url, {"prompt": "Another", "model": "image"}, format="json")
    assert refused.status_code == 402
    assert refused.json() | {"message": ""} == {
        "code": "insufficient_credits",
        "message": "",
        "required": 50,
        "balance": 39,
        "available": 39,
    }


def test_generations_within_the_quota_cost_no_credits(client_for, org, member, fund):
    fund(1000)
    fresh = ProjectFactory(organization=org)
    response = _generate(client_for(member), org, fresh, prompt="Hello", model="gpt-4")
    assert response.status_code == 200
    assert Generation.objects.count() == 1
    assert CreditAccount.objects.get(organization=org).balance == 1000
    assert not CreditTransaction.objects.filter(type="consumption").exists()
