"""What an action costs is shown before it runs: the Generate form, the credits page, and the
New project button once the plan's projects are used up."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from billing import entitlements
from credits import services as credit_services
from credits.models import CreditPrice
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_welcome_bonus(settings):
    settings.CREDITS_WELCOME_BONUS = 0


def _detail(client, org, project) -> str:
    response = client.get(reverse("project_detail", args=[org.slug, project.code]))
    assert response.status_code == 200
    return response.content.decode()


def test_the_generate_form_says_what_generations_cost_past_the_quota(client_for, org, member):
    project = ProjectFactory(organization=org)
    body = _detail(client_for(member), org, project)
    # Free: 10 generations a month, then credits at each model's current price.
    assert "10 of 10 generations left" in body
    assert "Past the quota, generations are paid with credits" in body
    assert "GPT-4 10 credits per 1,000 tokens (at most 6 an answer)" in body
    assert "Image 50 credits per image" in body
    assert 'data-testid="paid-with-credits"' not in body


def test_once_the_quota_is_used_up_it_says_the_next_one_is_paid_with_credits(client_for, org, member):
    project = ProjectFactory(organization=org)
    entitlements.consume(org, "ai_generations", 10, idempotency_key="used-up")
    credit_services.credits_grant(organization=org, amount=400, source="purchase", idempotency_key="g")
    body = _detail(client_for(member), org, project)
    assert "Free generations used" in body and "the next one is paid with credits: 400 available" in body
    assert reverse("credits", args=[org.slug]) in body  # buy credits
    assert 'or <a href="/pricing/#team">upgrade to Team (monthly)</a>' in body  # the cheapest with more
    assert "You have used all your generations" not in body  # not the banner that says it stops
    assert "Each generation costs: GPT-4 10 credits per 1,000 tokens" in body


def test_the_generate_form_shows_the_current_price_version(client_for, org, member):
    project = ProjectFactory(organization=org)
    credit_services.credit_price_current(action="image")
    credit_services.credit_price_set(action="image", credits=80, unit="image")
    body = _detail(client_for(member), org, project)
    assert "Image 80 credits per image" in body and "50 credits per image" not in body


def test_the_credits_page_lists_what_each_action_costs(client_for, org, member):
    credit_services.credit_price_current(action="image")
    credit_services.credit_price_set(action="image", credits=80, unit="image", description="Image generation")
    credit_services.credit_price_set(action="translate", credits=3, description="A translation")
    response = client_for(member).get(reverse("credits", args=[org.slug]))
    prices = {p.action: (p.version, p.credits) for p in response.context["prices"]}
    assert prices["image"] == (2, 80)  # the current version, not the first
    assert prices["translate"] == (1, 3)
    assert prices["gpt-4"] == (1, 10)  # a default not used yet: the version it will get
    body = response.content.decode()
    assert "A translation" in body and "3 credits per call" in body and "80 credits per image" in body
    assert not CreditPrice.objects.filter(action="gpt-4").exists()  # listing wrote nothing


def test_a_price_version_not_yet_in_effect_is_not_listed(client_for, org, member):
    later = credit_services.credit_price_set(action="translate", credits=3)
    CreditPrice.objects.filter(pk=later.pk).update(effective_from=timezone.now() + timedelta(days=1))
    prices = client_for(member).get(reverse("credits", args=[org.slug])).context["prices"]
    assert "translate" not in {p.action for p in prices}


def test_new_project_is_disabled_with_an_upgrade_link_at_the_limit(client_for, org, member):
    client = client_for(member)
    ProjectFactory(organization=org)
    for page in ("project_list", "dashboard"):
        body = client.get(reverse(page, args=[org.slug])).content.decode()
        assert f'href="{reverse("project_create", args=[org.slug])}"' in body
        assert 'data-testid="project-limit"' not in body
    ProjectFactory(organization=org)  # Free allows 2
    for page in ("project_list", "dashboard"):
        body = client.get(reverse(page, args=[org.slug])).content.decode()
        assert 'data-testid="project-limit"' in body
        assert 'disabled aria-describedby="project-limit-reason"' in body
        assert "2 of 2 projects used" in body
        assert '<a href="/pricing/" data-testid="upgrade-link">Upgrade for more</a>' in body
        assert f'href="{reverse("project_create", args=[org.slug])}"' not in body


def test_outsiders_see_no_costs(client_for, org, outsider):
    project = ProjectFactory(organization=org)
    client = client_for(outsider)
    assert client.get(reverse("project_detail", args=[org.slug, project.code])).status_code == 404
    assert client.get(reverse("credits", args=[org.slug])).status_code == 404
