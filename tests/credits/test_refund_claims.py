"""What a refunded purchase's credits owe: taken back when they can be, never spent, whatever the
order of refunds, holds and consumption refunds. Refunds travel the real path: the simulator
signs and posts `charge.refunded` to dj-stripe's endpoint on a live server."""

import itertools

import pytest
import requests
from django.conf import settings
from djstripe.models import Event
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from billing import subscriptions
from billing.gateway.client import stripe_client
from billing.webhooks import dispatch
from credits import services
from credits.models import CreditAccount, CreditGrant, CreditTransaction
from tests.credits.helpers import assert_reconciles, balance_of
from tests.credits.test_purchases import pay

pytestmark = pytest.mark.django_db(transaction=True)


def buy_10k(org, owner):
    """pack-10: 10,000 credits for $10, paid on the simulator's hosted page."""
    purchase, url = services.credit_purchase_start(
        organization=org, package=services.credit_package_get(code="pack-10"), actor=owner
    )
    assert pay(url).status_code == 303
    purchase.refresh_from_db()
    return purchase


def refund_events():
    return list(Event.objects.filter(type="charge.refunded").order_by("created", "id"))


def test_a_refund_owes_what_a_hold_kept_and_takes_it_when_the_hold_is_released(shop, org, owner):
    purchase = buy_10k(org, owner)
    hold = services.credit_reservation_create(organization=org, amount=6_000, idempotency_key="job")

    shop.v1.refunds.create({"payment_intent": purchase.payment_intent_id})
    account = CreditAccount.objects.get(organization=org)
    # 4,000 taken now; 6,000 are owed, recorded, and not spendable beside the hold.
    assert (account.balance, account.held, account.frozen) == (6_000, 6_000, 6_000)
    grant = CreditGrant.objects.get(source="purchase")
    assert (grant.remaining, grant.owed) == (6_000, 6_000)
    with pytest.raises(services.InsufficientCredits):
        services.credits_consume(organization=org, amount=1, idempotency_key="sneak")

    # The hold is released: nothing has to come back from Stripe for the owed credits to go.
    services.credit_reservation_cancel(reservation=hold)
    account.refresh_from_db()
    assert (account.balance, account.held, account.frozen) == (0, 0, 0)
    assert [c.amount for c in CreditTransaction.objects.filter(type="clawback").order_by("pk")] == [
        -4_000,
        -6_000,
    ]

    # The same event handled again (and delivered again to the endpoint) changes nothing.
    (event,) = refund_events()
    dispatch.handle(event.id)
    dispatch.handle(event.id)
    delivery = next(d for d in shop_deliveries(shop) if d["event"] == event.id)
    resend_delivery(delivery["id"])
    assert CreditTransaction.objects.filter(type="clawback").count() == 2
    assert balance_of(org) == 0
    assert_reconciles()


def shop_deliveries(shop):
    return requests.get(f"{settings.STRIPE_API_HOST}/_sim/deliveries", timeout=10).json()


def resend_delivery(delivery_id):
    response = requests.post(f"{settings.STRIPE_API_HOST}/_sim/deliveries/{delivery_id}/resend", timeout=30)
    assert response.status_code == 200


def test_a_confirmed_hold_spends_other_credits_before_the_owed_ones(shop, org, owner):
    purchase = buy_10k(org, owner)
    hold = services.credit_reservation_create(organization=org, amount=6_000, idempotency_key="job")
    shop.v1.refunds.create({"payment_intent": purchase.payment_intent_id})
    services.credits_grant(organization=org, amount=2_000, source="promotion", idempotency_key="promo")

    services.credit_reservation_confirm(reservation=hold, amount=5_000)
    # The job ran on the 2,000 given credits, then on 3,000 of the refunded ones (held before the
    # refund came); the 3,000 refunded credits left are taken at once.
    account = CreditAccount.objects.get(organization=org)
    assert (account.balance, account.held, account.frozen) == (0, 0, 0)
    assert CreditGrant.objects.get(source="purchase").remaining == 0
    assert_reconciles()


def test_a_partial_refund_takes_a_proportional_share_and_owes_the_held_part(shop, org, owner):
    purchase = buy_10k(org, owner)
    hold = services.credit_reservation_create(organization=org, amount=9_000, idempotency_key="job")
    shop.v1.refunds.create({"payment_intent": purchase.payment_intent_id, "amount": 300})  # 30%
    account = CreditAccount.objects.get(organization=org)
    assert (account.balance, account.frozen) == (9_000, 2_000)  # 1,000 taken, 2,000 owed
    services.credit_reservation_cancel(reservation=hold)
    assert balance_of(org) == 7_000
    # The rest of the money back: everything goes.
    shop.v1.refunds.create({"payment_intent": purchase.payment_intent_id})
    assert balance_of(org) == 0
    for event in refund_events():
        dispatch.handle(event.id)
    assert balance_of(org) == 0
    assert_reconciles()


# --- Consumption refunds after purchase refunds (any order ends at 0) --------------------------


def _spend_all(org):
    return services.credits_consume(organization=org, amount=10_000, idempotency_key="job")


def test_refunding_a_job_after_the_purchase_was_refunded_puts_nothing_back(shop, org, owner):
    purchase = buy_10k(org, owner)
    job = _spend_all(org)
    shop.v1.refunds.create({"payment_intent": purchase.payment_intent_id})
    assert balance_of(org) == 0
    services.credits_refund(consumption=job, reason="The job failed")
    assert balance_of(org) == 0
    assert_reconciles()


def test_refunds_of_money_and_of_the_job_end_at_zero_in_either_order(shop, org, owner):
    for order, key in (("money", "a"), ("job", "b")):
        account = CreditAccount.objects.filter(organization=org).first()
        if account is not None:
            assert account.balance == 0
        purchase = buy_10k(org, owner)
        job = services.credits_consume(organization=org, amount=10_000, idempotency_key=f"job-{key}")
        steps = [
            lambda p=purchase: shop.v1.refunds.create({"payment_intent": p.payment_intent_id}),
            lambda j=job: services.credits_refund(consumption=j, reason="failed"),
        ]
        if order == "job":
            steps.reverse()
        for step in steps:
            step()
        assert balance_of(org) == 0, order
    assert_reconciles()


@hsettings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    order=st.permutations(["refund_half", "refund_rest", "refund_job", "release"]),
    spent=st.sampled_from([0, 4_000, 10_000]),
)
def test_any_order_of_refunds_holds_and_job_refunds_takes_back_every_refunded_credit(
    order, spent, org, owner, fund
):
    """A 10,000-credit purchase, partly spent, partly held, refunded in two halves, with the job
    refunded and the hold released in any order: the refunded purchase leaves nothing spendable.
    (Without Stripe: the handler is called with the charge's refunded amount as it grows.)"""
    idem = next(_counter)
    purchase_entry = fund(10_000, idempotency_key=f"bought-{idem}")
    grant = CreditGrant.objects.get(allocations__transaction=purchase_entry)
    job = None
    if spent:
        job = services.credits_consume(organization=org, amount=spent, idempotency_key=f"job-{idem}")
    hold = None
    if spent < 10_000:
        hold = services.credit_reservation_create(
            organization=org, amount=min(3_000, 10_000 - spent), idempotency_key=f"hold-{idem}"
        )
    refunded = 0
    for step in order:
        if step == "refund_half":
            refunded = max(refunded, 500)
            services.credit_grant_refunded(grant=grant, credits=5_000)
        elif step == "refund_rest":
            refunded = 1_000
            services.credit_grant_refunded(grant=grant, credits=10_000)
        elif step == "refund_job" and job is not None:
            services.credits_refund(consumption=job, reason="failed", idempotency_key=f"r-{idem}")
        elif step == "release" and hold is not None:
            services.credit_reservation_cancel(reservation=hold)
        assert_reconciles()
    grant.refresh_from_db()
    account = CreditAccount.objects.get(organization=org)
    # Every refunded credit is gone from the grant; what the refund job gave back to it too.
    assert grant.remaining == 0
    assert (account.balance, account.held, account.frozen) == (0, 0, 0)
    # Reset for the next example: the account is empty, start over from nothing.
    del refunded


_counter = itertools.count()


def test_a_refund_that_comes_before_the_purchase_is_completed_is_still_taken_back(stripe_sim, org, owner):
    """Webhooks come in any order: here `charge.refunded` is handled before
    `checkout.session.completed` (no endpoint: the test hands billing each event itself)."""
    services.credits_seed_packages()
    purchase, url = services.credit_purchase_start(
        organization=org, package=services.credit_package_get(code="pack-10"), actor=owner
    )
    assert pay(url).status_code == 303
    client = stripe_client()
    session = client.v1.checkout.sessions.retrieve(purchase.checkout_session_id)
    refund = client.v1.refunds.create({"payment_intent": session.payment_intent})

    subscriptions.charge_refunded(charge_id=refund.charge)  # finds no completed purchase yet
    subscriptions.checkout_complete(session_id=session.id)
    purchase.refresh_from_db()
    assert (purchase.status, purchase.amount_refunded) == ("completed", 1_000)
    assert balance_of(org) == 0
    subscriptions.charge_refunded(charge_id=refund.charge)
    assert CreditTransaction.objects.filter(type="clawback").count() == 1
    assert_reconciles()
