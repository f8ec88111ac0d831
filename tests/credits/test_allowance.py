"""A hybrid plan: Pro (monthly) includes 1,000 credits a period, granted when the period starts
and expiring when it ends. Driven through Checkout and the simulator's test clock, with every
webhook on the real path."""

import time

import pytest
import requests
from django.urls import reverse
from djstripe.models import Event

from billing import catalog, subscriptions
from billing.gateway.client import stripe_client
from billing.gateway.customers import customer_ensure
from billing.gateway.setup import stripe_webhook_endpoint_ensure
from billing.models import OrgSubscription, Plan
from billing.webhooks import dispatch
from credits import services
from credits.models import CreditGrant, CreditTransaction
from tests.credits.helpers import assert_reconciles, balance_of

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_catalog_gives_pro_monthly_an_allowance():
    assert Plan.objects.get(key="pro_monthly").credit_allowance == 1_000
    assert Plan.objects.get(key="free").credit_allowance == 0


def test_each_period_brings_its_allowance_once(stripe_sim, live_server, settings, org, owner):
    settings.SITE_URL = live_server.url
    catalog.catalog_push()
    stripe_webhook_endpoint_ensure(site_url=live_server.url)
    client = stripe_client()
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": int(time.time())}).id
    customer_ensure(organization=org, test_clock=clock)

    url = subscriptions.checkout_start(
        organization=org, plan=Plan.objects.get(key="pro_monthly"), actor=owner
    )
    assert requests.post(url, data={"card_number": "4242424242424242"}, timeout=30).ok
    first = OrgSubscription.objects.get(organization=org)
    assert first.status == "trialing"
    grant = CreditGrant.objects.get(source="subscription_allowance")
    assert (grant.amount, grant.expires_at) == (1_000, first.current_period_end)
    assert balance_of(org) == 1_000

    # Every event of the period handled again: still one grant.
    for event in Event.objects.all():
        dispatch.handle(event.id)
    assert CreditTransaction.objects.filter(type="allowance").count() == 1

    # The period ends: the next one is paid and brings its own allowance.
    client.v1.test_helpers.test_clocks.advance(
        clock, {"frozen_time": int(first.current_period_end.timestamp()) + 60}
    )
    second = OrgSubscription.objects.get(organization=org)
    assert second.current_period_start > first.current_period_start
    assert CreditTransaction.objects.filter(type="allowance").count() == 2

    # Spending draws on the allowance that expires first; what is left of it goes at its end.
    services.credits_consume(organization=org, amount=300, idempotency_key="used")
    grants = list(CreditGrant.objects.filter(source="subscription_allowance").order_by("expires_at"))
    assert [(g.remaining, g.expires_at) for g in grants] == [
        (700, first.current_period_end),
        (1_000, second.current_period_end),
    ]
    assert balance_of(org) == 1_700
    assert_reconciles()


def test_the_pricing_comparison_shows_the_credits_included(client):
    def allowance_row(url):
        html = client.get(url).content.decode()
        return html[html.index('data-testid="credit-allowance"') :].split("</tr>")[0]

    monthly = allowance_row(reverse("pricing"))
    assert "Credits included" in monthly and "1,000 / month" in monthly
    # The allowance is Pro monthly's; no yearly plan has one.
    assert "/ year" not in allowance_row(reverse("pricing") + "?interval=year")
