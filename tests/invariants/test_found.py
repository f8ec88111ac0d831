"""Defects the lifecycle machine found, each as a plain regression test."""

import pytest
import requests

from billing import services, stripe_events, subscriptions
from billing.models import OrgSubscription, Plan
from billing.stripe_client import stripe_client
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


def test_it_bills_the_members_who_joined_while_checkout_was_open(
    stripe_sim, org, owner, django_capture_on_commit_callbacks
):
    # Found by the machine: start_checkout(team_monthly), member_joins, pay_checkout left Stripe
    # billing 1 seat for 2 members until some later membership change happened to sync seats.
    services.catalog_push()
    url = subscriptions.checkout_start(
        organization=org, plan=Plan.objects.get(key="team_monthly"), actor=owner
    )
    with django_capture_on_commit_callbacks(execute=True):
        MembershipFactory(organization=org)  # joins while the checkout page is open
    paid = requests.post(url, data={"card_number": "4242424242424242"}, allow_redirects=False, timeout=30)
    assert paid.status_code == 303

    with django_capture_on_commit_callbacks(execute=True):
        stripe_events.handle("evt_checkout", "checkout.session.completed", url.rsplit("/", 1)[-1])

    local = OrgSubscription.objects.get(organization=org)
    remote = stripe_client().v1.subscriptions.retrieve(
        local.stripe_subscription_id, {"expand": ["items.data.price"]}
    )
    seat_item = next(i for i in remote["items"].data if (i.price.metadata or {}).get("tally_item") == "seats")
    assert seat_item.quantity == 2
    assert local.seats == 2
