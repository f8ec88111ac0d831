"""The whole subscription lifecycle against the Stripe simulator, driven by its test clock, with
every webhook delivered through dj-stripe's endpoint on a live server."""

import time
from datetime import UTC, datetime

import pytest
import requests
from djstripe.models import Event

from billing import catalog, entitlements, subscriptions
from billing.gateway.client import stripe_client
from billing.gateway.customers import customer_ensure
from billing.gateway.setup import stripe_webhook_endpoint_ensure
from billing.models import Access, Addon, EntitlementGrant, OrgSubscription, Payment, Plan
from billing.webhooks import dispatch
from tests.factories import MembershipFactory, OrganizationFactory

pytestmark = pytest.mark.django_db(transaction=True)


def clock_now(client, clock_id) -> datetime:
    frozen = client.v1.test_helpers.test_clocks.retrieve(clock_id).frozen_time
    return datetime.fromtimestamp(frozen, tz=UTC)


def past_period_end(client, clock_id, org) -> datetime:
    """Move the clock a minute past the end of the current billing period."""
    end = OrgSubscription.objects.get(organization=org).current_period_end
    client.v1.test_helpers.test_clocks.advance(clock_id, {"frozen_time": int(end.timestamp()) + 60})
    return clock_now(client, clock_id)


def pay_hosted_checkout(url: str, card: str = "4242424242424242") -> requests.Response:
    return requests.post(
        url, data={"card_number": card, "email": "olivia@example.com"}, allow_redirects=False, timeout=30
    )


@pytest.fixture
def world(stripe_sim, live_server, settings):
    settings.SITE_URL = live_server.url
    catalog.catalog_push()
    stripe_webhook_endpoint_ensure(site_url=live_server.url)
    client = stripe_client()
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": int(time.time())})
    org = OrganizationFactory(name="Acme", slug="acme")
    owner = MembershipFactory(organization=org, role="owner", user__email="olivia@example.com").user
    customer_ensure(organization=org, test_clock=clock.id)
    return client, clock.id, org, owner


def state(org) -> tuple:
    sub = OrgSubscription.objects.get(organization=org)
    payments = sorted(
        Payment.objects.filter(organization=org).values_list(
            "stripe_invoice_id", "status", "amount_paid", "amount_refunded"
        )
    )
    grants = sorted(EntitlementGrant.objects.filter(organizations=org).values_list("reference", "amount"))
    return (
        sub.plan.key,
        sub.status,
        sub.seats,
        sub.cancel_at_period_end,
        sub.grace_until,
        sub.current_period_start,
        sub.stripe_subscription_id,
        tuple(payments),
        tuple(grants),
    )


def test_the_lifecycle_from_checkout_to_free(world):
    client, clock, org, owner = world
    ai = Plan.objects.get(key="ai_monthly")
    seats_pack = Addon.objects.get(key="extra_seats")

    # Checkout with a one-time add-on, paid on the simulator's hosted page.
    url = subscriptions.checkout_start(
        organization=org, plan=ai, actor=owner, addons={seats_pack: 1}, test_clock=clock
    )
    paid = pay_hosted_checkout(url)
    assert paid.status_code == 303 and "/o/acme/billing/success/?session_id=cs_" in paid.headers["Location"]
    sub = OrgSubscription.objects.get(organization=org)
    assert (sub.plan.key, sub.status, sub.access) == ("ai_monthly", "active", Access.FULL)
    first = Payment.objects.get(organization=org)
    assert (first.status, first.amount_paid, first.billing_reason) == (
        "paid",
        500 + 9900,
        "subscription_create",
    )
    assert entitlements.check(org, "team_members", 0).limit == 3 + 5  # the seat pack

    # Use the whole quota.
    now = clock_now(client, clock)
    assert entitlements.consume(org, "ai_generations", 250, idempotency_key="month-1", now=now).allowed
    assert not entitlements.check(org, "ai_generations", now=now).allowed

    # A month later the renewal is paid and the quota starts afresh.
    now = past_period_end(client, clock, org)
    renewal = Payment.objects.filter(organization=org, billing_reason="subscription_cycle").get()
    assert (renewal.status, renewal.amount_paid) == ("paid", 500)
    fresh = entitlements.check(org, "ai_generations", now=now)
    assert fresh.allowed and fresh.used == 0

    # The card starts failing: past due, full access during the grace period.
    customer = customer_ensure(organization=org)
    card = client.v1.payment_methods.attach("pm_card_chargeCustomerFail", {"customer": customer})
    client.v1.customers.update(card.customer, {"invoice_settings": {"default_payment_method": card.id}})
    client.v1.subscriptions.update(sub.stripe_subscription_id, {"default_payment_method": card.id})
    now = past_period_end(client, clock, org)
    sub.refresh_from_db()
    assert sub.status == "past_due" and sub.grace_until is not None
    assert sub.access_at(now) == Access.FULL
    assert entitlements.consume(org, "ai_generations", 1, idempotency_key="in-grace", now=now).allowed
    failed = Payment.objects.get(organization=org, status="failed")

    # After the grace period: data visible, consumption and creation blocked.
    later = sub.grace_until
    assert sub.access_at(later) == Access.RESTRICTED
    blocked = entitlements.check(org, "ai_generations", now=later)
    assert (blocked.allowed, blocked.reason) == (False, "restricted")
    assert entitlements.check(org, "ai_generations", 0, now=later).allowed  # usage still shown

    # The card is fixed and the invoice paid: full access at once.
    visa = client.v1.payment_methods.attach("pm_card_visa", {"customer": card.customer})
    client.v1.customers.update(card.customer, {"invoice_settings": {"default_payment_method": visa.id}})
    client.v1.invoices.pay(failed.stripe_invoice_id, {"payment_method": visa.id})
    sub.refresh_from_db()
    assert (sub.status, sub.grace_until) == ("active", None)
    assert entitlements.check(org, "ai_generations", now=later).allowed
    assert Payment.objects.get(stripe_invoice_id=failed.stripe_invoice_id).status == "paid"

    # Cancel at period end: everything stays until the period ends, then Free.
    subscriptions.subscription_cancel(organization=org, actor=owner)
    sub.refresh_from_db()
    assert sub.cancel_at_period_end and sub.status == "active"
    assert entitlements.check(org, "ai_generations", 0, now=now).limit == 250
    now = past_period_end(client, clock, org)
    sub.refresh_from_db()
    assert sub.status == "canceled"
    assert entitlements.check(org, "ai_generations", 0, now=now).limit == 10  # Free
    assert entitlements.check(org, "team_members", 0).limit == 3 + 5  # the pack was bought once

    # Replayed twice, and in reverse order, every event leaves the same final state.
    final = state(org)
    events = list(Event.objects.order_by("created", "djstripe_id").values_list("id", flat=True))
    assert len(events) > 10
    for event_id in events + events:
        dispatch.handle(event_id)
    assert state(org) == final
    for event_id in reversed(events):
        dispatch.handle(event_id)
    assert state(org) == final
