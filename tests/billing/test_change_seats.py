"""Changing to a prepaid-seat plan bills the seats the person chose, never fewer than the team."""

import re

import pytest
from django.urls import reverse

from billing.catalog import catalog_push
from billing.gateway.client import stripe_client
from billing.models import OrgSubscription, Plan
from billing.models.catalog import SeatMode
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def prepaid_team(stripe_sim):
    catalog_push()
    Plan.objects.filter(key="team_monthly").update(seat_mode=SeatMode.PREPAID)
    return Plan.objects.get(key="team_monthly")


def change(client, org, **data):
    return client.post(reverse("billing_change", args=[org.slug]), {"plan": "team_monthly", **data})


def test_it_bills_the_seats_chosen_on_the_change(client_for, prepaid_team, org, owner, subscribed):
    subscribed("pro_monthly", sync=True)
    response = change(client_for(owner), org, seats="7")
    assert response.status_code == 302
    subscription = OrgSubscription.objects.get(organization=org)
    assert (subscription.plan_id, subscription.seats) == (prepaid_team.pk, 7)
    remote = stripe_client().v1.subscriptions.retrieve(subscription.stripe_subscription_id)
    quantities = {i.price.id: i.get("quantity") for i in remote["items"].data}
    assert quantities[prepaid_team.seat_item().stripe_price_id] == 7


@pytest.mark.parametrize(
    ("seats", "message"),
    [
        ("1", "has 2 members: choose at least 2 seats"),
        ("two", "The number of seats is a whole number."),
        ("1001", "At most 1000 seats online."),
    ],
    ids=["below-members", "not-a-number", "too-many"],
)
def test_it_refuses_a_seat_count_it_cannot_bill_and_changes_nothing(
    client_for, prepaid_team, org, owner, subscribed, seats, message
):
    MembershipFactory(organization=org, role="member")
    before = subscribed("pro_monthly", sync=True)
    response = change(client_for(owner), org, seats=seats)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert OrgSubscription.objects.get(organization=org).plan_id == before.plan_id


def test_the_live_price_is_the_servers_for_the_seats_typed(client_for, prepaid_team, org, owner, subscribed):
    subscribed("pro_monthly", sync=True)
    client = client_for(owner)
    url = reverse("billing_change", args=[org.slug])
    response = client.get(url, {"plan": "team_monthly", "seats": "5"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="change-price"')  # the fragment alone
    text = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    assert "$30 / month for 5 seats" in text and "Seats 4–5" in text
    assert response.context["billed_seats"] == 5


def test_a_plan_billed_per_member_shows_no_stepper(client_for, stripe_sim, org, owner, subscribed):
    catalog_push()
    subscribed("pro_monthly", sync=True)
    page = client_for(owner).get(reverse("billing_change", args=[org.slug]), {"plan": "team_monthly"})
    assert page.status_code == 200
    assert 'data-testid="seat-stepper"' not in page.content.decode()
