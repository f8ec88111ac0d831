import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_the_pricing_page_is_public_and_built_from_the_catalog(client):
    response = client.get(reverse("pricing"))
    assert response.status_code == 200
    html = response.content.decode()
    for product in ("Free", "Pro", "Team", "Platform", "Enterprise", "AI Access"):
        assert f"<h2>{product}</h2>" in html
    assert 'data-testid="price-pro"><span class="amount">$49</span>' in html
    assert "Premium Onboarding" in html and "$299" in html
    assert "10,000 / month" in html  # Pro's API calls in the comparison table
    assert "Unlimited" in html


def test_the_yearly_toggle_swaps_the_plans_and_shows_the_saving(client):
    response = client.get(
        reverse("pricing") + "?interval=year", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="plans"
    )
    html = response.content.decode()
    assert "<html" not in html and 'id="plans"' in html
    assert 'data-testid="price-pro"><span class="amount">$490</span>' in html
    assert 'data-testid="saving-pro">Save 17%' in html  # $490 against 12 x $49


def test_the_seat_calculator_shows_the_tier_breakdown(client):
    response = client.get(reverse("pricing_seats"), {"plan": "team_monthly", "seats": 12})
    html = response.content.decode()
    assert "$129" in html
    assert "Seats 4–10" in html and "7 × $15" in html and "$105" in html
    assert "Seats 11–12" in html and "2 × $12" in html


def test_the_seat_calculator_clamps_bad_input(client):
    response = client.get(reverse("pricing_seats"), {"plan": "team_monthly", "seats": "-4"})
    assert "for 1 seat" in response.content.decode()
    assert client.get(reverse("pricing_seats"), {"plan": "pro_monthly"}).status_code == 404


def test_a_subscribed_visitor_is_offered_a_switch_not_a_second_checkout(client_for, org, owner):
    from billing import entitlements
    from billing.models import Plan

    entitlements.subscription_set(
        organization=org,
        plan=Plan.objects.get(key="ai_monthly"),
        status="active",
        stripe_subscription_id="sub_123",
    )
    html = client_for(owner).get(reverse("pricing")).content.decode()
    assert "Your plan" in html
    assert f"/o/{org.slug}/billing/change/?plan=pro_monthly" in html
    assert 'data-testid="subscribe-pro"' not in html
