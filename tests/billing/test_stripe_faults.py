"""Every call Tally makes to Stripe, under each fault class the simulator injects.

A fault that passes (the next call fails, the one after answers) is retried by the SDK under the
first attempt's idempotency key, and Stripe applies the call once. A fault that lasts is told to
the person as a page message (or a command's error), never a 500, and changes nothing on our side.
The fault classes: a 500, a 429, a connection cut without an answer, and an answer later than the
client's timeout (Stripe still does the work, as it would).
"""

import time
from datetime import timedelta

import pytest
import requests
import stripe
from django.conf import settings
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.urls import reverse

from billing.catalog import catalog_push
from billing.gateway.client import stripe_client
from billing.metering import reporting as usage
from billing.models import MeterReport, OrgSubscription, Payment
from billing.seats import sync as seats
from tests.billing.conftest import subscribe
from tests.billing.test_seats import seat_quantity, subscribe_seats
from tests.billing.test_seats import team as team_of
from tests.billing.test_usage_reporting import generations, stripe_usage, team  # noqa: F401
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db

FAULTS = {
    "500": {"status": 500},
    "429": {"status": 429},
    "reset": {"kind": "reset"},
    "timeout": {"kind": "latency", "latency_ms": 1200},
}
LASTING = 3  # the SDK tries three times (two retries)


@pytest.fixture
def catalog(stripe_sim, settings):
    settings.STRIPE_TIMEOUT_SECONDS = 0.4  # the latency fault answers after 1.2 s
    catalog_push()
    return stripe_client()


def arm(path: str, fault: str, *, count: int = 1) -> None:
    response = requests.post(
        f"{settings.STRIPE_API_HOST}/_sim/faults",
        json={"path": path, "method": "POST", "count": count, **FAULTS[fault]},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def attempts(stripe_sim, path: str) -> list[dict]:
    prefix = path[:-1] if path.endswith("*") else None
    with stripe_sim.store.lock:
        return [
            r
            for r in stripe_sim.store.requests
            if r["method"] == "POST" and (r["path"].startswith(prefix) if prefix else r["path"] == path)
        ]


def assert_retried_under_one_key(stripe_sim, path: str) -> None:
    """The faulted call was tried again under its first key, and no key was applied twice."""
    by_key: dict[str, list[dict]] = {}
    for attempt in attempts(stripe_sim, path):
        assert attempt["idempotency_key"], attempt
        by_key.setdefault(attempt["idempotency_key"], []).append(attempt)
    assert any(len(tries) >= 2 for tries in by_key.values()), by_key
    for tries in by_key.values():
        applied = [t for t in tries if t["status"] == 200 and not t["replayed"]]
        assert len(applied) <= 1, tries


def wait_for_slow_calls(fault: str) -> None:
    """The latency fault's calls finish after the client gave up on them; let them end."""
    if fault == "timeout":
        time.sleep(FAULTS["timeout"]["latency_ms"] / 1000)


def objects(stripe_sim, kind: str) -> list[dict]:
    with stripe_sim.store.lock:
        return list(stripe_sim.store.objects.get(kind, {}).values())


def subscribe_plan(org, plan_key):
    return subscribe(plan_key, organization=org)


def page_messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# --- Checkout -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS)
def test_checkout_start_survives_a_passing_fault(catalog, stripe_sim, client_for, org, owner, fault):
    arm("/v1/checkout/sessions", fault)
    response = client_for(owner).post(reverse("billing_checkout", args=[org.slug]), {"plan": "pro_monthly"})
    wait_for_slow_calls(fault)
    assert response.status_code == 302 and "/checkout/" in response.url
    assert_retried_under_one_key(stripe_sim, "/v1/checkout/sessions")
    assert len(objects(stripe_sim, "checkout.session")) == 1


@pytest.mark.parametrize("fault", FAULTS)
def test_checkout_start_says_so_when_stripe_stays_down(catalog, stripe_sim, client_for, org, owner, fault):
    arm("/v1/checkout/sessions", fault, count=LASTING)
    response = client_for(owner).post(reverse("billing_checkout", args=[org.slug]), {"plan": "pro_monthly"})
    wait_for_slow_calls(fault)
    assert response.status_code == 302 and response.url == reverse("billing", args=[org.slug])
    assert page_messages(response) == ["Stripe could not start the checkout; please try again."]
    assert not OrgSubscription.objects.filter(organization=org, stripe_subscription_id__isnull=False).exists()


# --- The customer portal ------------------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS)
def test_the_portal_survives_a_passing_fault(catalog, stripe_sim, client_for, org, owner, fault):
    subscribe_plan(org, "pro_monthly")
    arm("/v1/billing_portal/sessions", fault)
    response = client_for(owner).post(reverse("billing_portal", args=[org.slug]))
    wait_for_slow_calls(fault)
    assert response.status_code == 302 and "/portal/" in response.url
    assert_retried_under_one_key(stripe_sim, "/v1/billing_portal/sessions")


@pytest.mark.parametrize("fault", FAULTS)
def test_the_portal_says_so_when_stripe_stays_down(catalog, stripe_sim, client_for, org, owner, fault):
    subscribe_plan(org, "pro_monthly")
    arm("/v1/billing_portal/sessions", fault, count=LASTING)
    response = client_for(owner).post(reverse("billing_portal", args=[org.slug]))
    wait_for_slow_calls(fault)
    assert response.url == reverse("billing", args=[org.slug])
    assert page_messages(response) == ["Stripe's customer portal is unavailable; please try again."]


# --- Plan change --------------------------------------------------------------------------------


def _change(client, org):
    return client.post(reverse("billing_change", args=[org.slug]), {"plan": "pro_monthly"})


@pytest.mark.parametrize("fault", FAULTS)
def test_a_plan_change_survives_a_passing_fault(catalog, stripe_sim, client_for, org, owner, fault):
    sub = subscribe_plan(org, "ai_monthly")
    arm(f"/v1/subscriptions/{sub.stripe_subscription_id}", fault)
    response = _change(client_for(owner), org)
    wait_for_slow_calls(fault)
    assert page_messages(response) == ["Your plan is now Pro (monthly)."]
    assert_retried_under_one_key(stripe_sim, f"/v1/subscriptions/{sub.stripe_subscription_id}")
    updates = [i for i in objects(stripe_sim, "invoice") if i["billing_reason"] == "subscription_update"]
    assert len(updates) == 1  # one proration invoice: the change was applied once


@pytest.mark.parametrize("fault", FAULTS)
def test_a_plan_change_says_so_when_stripe_stays_down(catalog, stripe_sim, client_for, org, owner, fault):
    sub = subscribe_plan(org, "ai_monthly")
    arm(f"/v1/subscriptions/{sub.stripe_subscription_id}", fault, count=LASTING)
    response = _change(client_for(owner), org)
    wait_for_slow_calls(fault)
    assert response.status_code == 302 and response.url == reverse("billing", args=[org.slug])
    [message] = page_messages(response)
    assert "Stripe" in message and "try again" in message
    if fault != "timeout":  # a timed-out change may have been applied by Stripe; the webhook says so
        assert OrgSubscription.objects.get(organization=org).plan.key == "ai_monthly"


# --- Refund -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS)
def test_a_refund_survives_a_passing_fault(catalog, stripe_sim, client_for, org, owner, fault):
    subscribe_plan(org, "pro_monthly")
    arm("/v1/refunds", fault)
    response = client_for(owner).post(reverse("billing_refund", args=[org.slug]))
    wait_for_slow_calls(fault)
    assert page_messages(response) == ["Subscription cancelled and its first payment refunded in full."]
    assert_retried_under_one_key(stripe_sim, "/v1/refunds")
    assert [r["amount"] for r in objects(stripe_sim, "refund")] == [4900]
    payment = Payment.objects.get(organization=org)
    assert (payment.status, payment.amount_refunded) == ("refunded", 4900)


@pytest.mark.parametrize("fault", FAULTS)
def test_a_refund_says_so_when_stripe_stays_down_and_a_retry_finishes_it(
    catalog, stripe_sim, client_for, org, owner, fault
):
    subscribe_plan(org, "pro_monthly")
    arm("/v1/refunds", fault, count=LASTING)
    client = client_for(owner)
    response = client.post(reverse("billing_refund", args=[org.slug]))
    wait_for_slow_calls(fault)
    [message] = page_messages(response)
    assert "Stripe" in message and "try again" in message
    # The person tries again once Stripe answers: refunded once, canceled.
    client.get(reverse("billing", args=[org.slug]))  # the person reads the message
    again = client.post(reverse("billing_refund", args=[org.slug]))
    assert page_messages(again) == ["Subscription cancelled and its first payment refunded in full."]
    assert [r["amount"] for r in objects(stripe_sim, "refund")] == [4900]
    assert OrgSubscription.objects.get(organization=org).status == "canceled"


# --- Seat sync ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS)
def test_a_seat_sync_survives_a_passing_fault(catalog, stripe_sim, org, fault):
    team_of(org, 4)
    sub, _ = subscribe_seats(org, "team_monthly")
    MembershipFactory(organization=org)
    arm("/v1/subscription_items/*", fault)
    seats.seat_sync(organization_id=org.pk, attempt="sync-1")
    wait_for_slow_calls(fault)
    assert seat_quantity(catalog, sub) == 5
    assert_retried_under_one_key(stripe_sim, "/v1/subscription_items/*")


@pytest.mark.parametrize("fault", FAULTS)
def test_a_seat_sync_that_gives_up_is_retried_by_its_task_under_the_same_key(catalog, stripe_sim, org, fault):
    team_of(org, 4)
    sub, _ = subscribe_seats(org, "team_monthly")
    MembershipFactory(organization=org)
    arm("/v1/subscription_items/*", fault, count=LASTING)
    with pytest.raises(stripe.StripeError):  # the task's autoretry catches this and tries later
        seats.seat_sync(organization_id=org.pk, attempt="sync-1")
    wait_for_slow_calls(fault)
    seats.seat_sync(organization_id=org.pk, attempt="sync-1")  # the task's retry: same attempt
    assert seat_quantity(catalog, sub) == 5
    applied = [t for t in attempts(stripe_sim, "/v1/subscription_items/*") if t["status"] == 200]
    assert len({t["idempotency_key"] for t in applied}) == 1


# --- Catalog push -------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS)
def test_the_catalog_push_survives_a_passing_fault(stripe_sim, settings, fault):
    settings.STRIPE_TIMEOUT_SECONDS = 0.4
    arm("/v1/prices", fault)
    catalog_push()
    wait_for_slow_calls(fault)
    assert_retried_under_one_key(stripe_sim, "/v1/prices")
    keys = [p["lookup_key"] for p in objects(stripe_sim, "price") if p.get("lookup_key")]
    assert keys and len(keys) == len(set(keys))  # no price created twice


@pytest.mark.parametrize("fault", FAULTS)
def test_the_catalog_sync_command_says_so_when_stripe_stays_down(stripe_sim, settings, fault):
    settings.STRIPE_TIMEOUT_SECONDS = 0.4
    arm("/v1/prices", fault, count=LASTING)
    with pytest.raises(CommandError, match="Stripe refused the catalog"):
        call_command("catalog_sync")
    wait_for_slow_calls(fault)
    catalog_push()  # run again once Stripe answers: every price once
    keys = [p["lookup_key"] for p in objects(stripe_sim, "price") if p.get("lookup_key")]
    assert keys and len(keys) == len(set(keys))


# --- Meter reports ------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS)
def test_a_meter_report_survives_a_passing_fault(team, org, stripe_sim, settings, fault):  # noqa: F811
    settings.STRIPE_TIMEOUT_SECONDS = 0.4
    at = team["start"] + timedelta(hours=1)
    generations(org, 5, at=at)
    arm("/v1/billing/meter_events", fault)
    assert usage.usage_report_run(now=at).sent == 1
    wait_for_slow_calls(fault)
    assert_retried_under_one_key(stripe_sim, "/v1/billing/meter_events")
    assert stripe_usage(team) == 5


@pytest.mark.parametrize("fault", FAULTS)
def test_a_meter_report_that_gives_up_is_sent_later_once(team, org, stripe_sim, settings, fault):  # noqa: F811
    settings.STRIPE_TIMEOUT_SECONDS = 0.4
    at = team["start"] + timedelta(hours=1)
    generations(org, 5, at=at)
    arm("/v1/billing/meter_events", fault, count=LASTING)
    assert usage.usage_report_run(now=at).retrying == 1
    wait_for_slow_calls(fault)
    report = MeterReport.objects.get()
    assert report.status == "pending" and report.last_error  # staff see why in the admin
    assert usage.usage_report_send(now=report.next_attempt_at).sent == 1
    assert stripe_usage(team) == 5  # once, even where Stripe had it after a timeout
