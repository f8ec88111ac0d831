"""Stripe's webhooks dropped, hours late, duplicated or out of order (the simulator's delivery
faults), through dj-stripe's endpoint on a live server: the state converges, and what a dropped
webhook left behind is repaired by `billing_reconcile --fix` (nightly on the beat schedule)."""

import pytest
import requests
from django.conf import settings
from django.core.management import call_command

from billing import subscriptions
from billing.models import OrgSubscription, Payment, Plan
from tests.billing.test_lifecycle import pay_hosted_checkout, world  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def _faults(*faults) -> None:
    response = requests.post(
        f"{settings.STRIPE_API_HOST}/_sim/config", json={"webhook_faults": list(faults)}, timeout=10
    )
    assert response.status_code == 200, response.text


def _release() -> list[str]:
    return requests.post(f"{settings.STRIPE_API_HOST}/_sim/deliveries/release", timeout=30).json()


def _buy_pro(world) -> None:  # noqa: F811
    client, clock, org, owner = world
    url = subscriptions.checkout_start(
        organization=org, plan=Plan.objects.get(key="ai_monthly"), actor=owner, test_clock=clock
    )
    assert pay_hosted_checkout(url).status_code == 303


def summary(org) -> tuple:
    sub = OrgSubscription.objects.filter(organization=org, stripe_subscription_id__isnull=False).first()
    payments = sorted(
        Payment.objects.filter(organization=org).values_list("status", "amount_paid", "billing_reason")
    )
    if sub is None:
        return (None, None, tuple(payments))
    return (sub.plan.key, sub.status, tuple(payments))


PAID = ("ai_monthly", "active", (("paid", 500, "subscription_create"),))


def test_without_faults_checkout_ends_on_the_plan_paid(world):  # noqa: F811
    _buy_pro(world)
    assert summary(world[2]) == PAID


@pytest.mark.parametrize(
    "fault",
    [
        {"type": "*", "action": "duplicate"},
        {"type": "checkout.session.completed", "action": "reorder", "count": 1},
        {"type": "customer.subscription.created", "action": "reorder", "count": 1},
        {"type": "invoice.paid", "action": "reorder", "count": 1},
    ],
    ids=["duplicated", "checkout-last", "created-late", "paid-late"],
)
def test_duplicated_and_reordered_deliveries_converge(world, fault):  # noqa: F811
    _faults(fault)
    _buy_pro(world)
    _release()  # anything still held back
    assert summary(world[2]) == PAID


def test_deliveries_hours_late_converge_when_they_arrive(world):  # noqa: F811
    _faults({"type": "*", "action": "delay", "seconds": 6 * 3600})
    _buy_pro(world)
    org = world[2]
    assert summary(org) == (None, None, ())  # nothing heard yet
    assert _release()
    assert summary(org) == PAID


def test_a_dropped_checkout_is_repaired_by_reconcile(world, capsys):  # noqa: F811
    _faults({"type": "*", "action": "drop"})
    _buy_pro(world)
    org = world[2]
    assert summary(org) == (None, None, ())
    call_command("billing_reconcile")
    assert "acme" in capsys.readouterr().out  # reported
    assert summary(org) == (None, None, ())  # and, without --fix, left alone
    call_command("billing_reconcile", "--fix")
    assert summary(org) == PAID
    call_command("billing_reconcile", "--fix")  # nothing left to do: twice is safe
    assert summary(org) == PAID


def test_a_dropped_cancellation_is_repaired_by_reconcile(world):  # noqa: F811
    _buy_pro(world)
    client, _, org, _ = world
    _faults({"type": "customer.subscription.*", "action": "drop"})
    sub = OrgSubscription.objects.get(organization=org)
    client.v1.subscriptions.update(sub.stripe_subscription_id, {"cancel_at_period_end": True})  # the portal
    sub.refresh_from_db()
    assert not sub.cancel_at_period_end  # Tally never heard
    call_command("billing_reconcile", "--fix")
    sub.refresh_from_db()
    assert sub.cancel_at_period_end


def test_the_nightly_task_repairs_what_the_command_does(world):  # noqa: F811
    from billing.tasks import reconcile_subscriptions

    assert settings.CELERY_BEAT_SCHEDULE["billing-reconcile"]["task"] == reconcile_subscriptions.name
    _faults({"type": "*", "action": "drop"})
    _buy_pro(world)
    assert reconcile_subscriptions.apply().get() >= 2  # the subscription, its payment
    assert summary(world[2]) == PAID
    assert reconcile_subscriptions.apply().get() == 0


# --- An event whose handler fails is not lost ---------------------------------------------------


def test_an_event_whose_handler_failed_is_retried_until_it_is_processed(world, stripe_sim):  # noqa: F811
    from datetime import timedelta

    from django.utils import timezone

    from billing.models import StripeEventOutcome
    from billing.webhooks.dispatch import failed_events_retry

    client, clock, org, owner = world
    url = subscriptions.checkout_start(
        organization=org, plan=Plan.objects.get(key="ai_monthly"), actor=owner, test_clock=clock
    )
    # The checkout's handler reads the session's lines from Stripe; Stripe fails those reads for
    # a while (dj-stripe, which stored the event, does not read them).
    response = requests.post(
        f"{settings.STRIPE_API_HOST}/_sim/faults",
        json={
            "path": f"/v1/checkout/sessions/{url.rstrip('/').rsplit('/', 1)[-1]}/line_items",
            "method": "GET",
            "status": 500,
            "count": 10_000,
        },
        timeout=10,
    )
    assert response.status_code == 200
    try:
        pay_hosted_checkout(url)
    finally:
        requests.delete(f"{settings.STRIPE_API_HOST}/_sim/faults", timeout=10)
    org = world[2]
    failed = StripeEventOutcome.objects.filter(status="failed")
    assert failed.filter(type="checkout.session.completed").exists()
    assert all(o.attempts == 1 and "simulated fault" in o.last_error for o in failed)
    first = {o.event_id: o.created_at for o in failed}

    assert failed_events_retry() == (0, 0)  # not due yet
    count = failed.count()
    assert failed_events_retry(now=timezone.now() + timedelta(hours=1)) == (count, 0)
    assert summary(org) == PAID
    assert not StripeEventOutcome.objects.filter(status="failed").exists()
    # Processed now, with the history of its failure kept.
    retried = StripeEventOutcome.objects.filter(event_id__in=first)
    assert {o.event_id: o.created_at for o in retried} == first
    assert all(o.attempts == 1 and "simulated fault" in o.last_error for o in retried)
    assert all(o.status == "processed" and o.next_attempt_at is None for o in retried)
    assert failed_events_retry(now=timezone.now() + timedelta(days=1)) == (0, 0)
