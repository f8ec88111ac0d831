"""The auto-recharge charge under each fault class the simulator injects (see
tests/billing/test_stripe_faults.py for the other calls): one PaymentIntent whatever the
retries, and a recharge Stripe never answered is finished later under the same key."""

import contextlib
from datetime import timedelta

import pytest
import stripe
from celery.exceptions import Retry
from django.utils import timezone

from credits import services
from credits.models import CreditRecharge
from tests.billing.test_stripe_faults import (
    FAULTS,
    LASTING,
    arm,
    assert_retried_under_one_key,
    objects,
    wait_for_slow_calls,
)
from tests.credits.helpers import assert_reconciles, balance_of
from tests.credits.test_purchases import _enable, buy

pytestmark = pytest.mark.django_db(transaction=True)


def _recharges(stripe_sim) -> list[dict]:
    return [p for p in objects(stripe_sim, "payment_intent") if p["metadata"].get("tally_recharge")]


@pytest.mark.parametrize("fault", FAULTS)
def test_a_recharge_survives_a_passing_fault(shop, stripe_sim, settings, org, owner, fault):
    settings.STRIPE_TIMEOUT_SECONDS = 0.4
    buy(org, owner, "tokens-1k")  # saves the card; 1,000 credits
    _enable(org, owner, threshold=500)
    arm("/v1/payment_intents", fault)
    services.credits_consume(organization=org, amount=600, idempotency_key="crosses")
    wait_for_slow_calls(fault)
    assert CreditRecharge.objects.get().status == "succeeded"
    assert_retried_under_one_key(stripe_sim, "/v1/payment_intents")
    assert len(_recharges(stripe_sim)) == 1
    assert balance_of(org) == 400 + 10_000
    assert_reconciles()


@pytest.mark.parametrize("fault", FAULTS)
def test_a_recharge_stripe_never_answered_is_finished_later_once(
    shop, stripe_sim, settings, org, owner, fault
):
    settings.STRIPE_TIMEOUT_SECONDS = 0.4
    buy(org, owner, "tokens-1k")
    _enable(org, owner, threshold=500)
    arm("/v1/payment_intents", fault, count=LASTING * 6)  # past the task's own retries too
    # Tests propagate the in-process task's failure (or its retry, which a worker would run
    # later); the consumption itself committed.
    with contextlib.suppress(stripe.StripeError, Retry):
        services.credits_consume(organization=org, amount=600, idempotency_key="crosses")
    wait_for_slow_calls(fault)
    recharge = CreditRecharge.objects.get()
    assert recharge.status == "pending" and balance_of(org) == 400
    requests_disarm(stripe_sim)
    CreditRecharge.objects.filter(pk=recharge.pk).update(created_at=timezone.now() - timedelta(minutes=6))
    assert services.credit_recharges_resume() == 1  # the periodic job
    assert CreditRecharge.objects.get().status == "succeeded"
    assert len(_recharges(stripe_sim)) == 1  # a timed-out charge Stripe made is not made again
    assert balance_of(org) == 400 + 10_000
    assert_reconciles()


def requests_disarm(stripe_sim) -> None:
    with stripe_sim.store.lock:
        stripe_sim.store.faults.clear()
