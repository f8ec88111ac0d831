"""One trial per organization and per Stripe customer: checking out again after a trial (three
times, with nothing ever paid) must not bring another trial or another month of credits."""

import pytest
from djstripe.models import Event

from billing import subscriptions
from billing.gateway.customers import customer_ensure
from billing.models import OrgSubscription, Payment, Plan, TrialRecord
from billing.webhooks import dispatch
from credits.models import CreditTransaction
from tests.billing.conftest import pay_hosted_checkout
from tests.credits.helpers import assert_reconciles, balance_of
from tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db(transaction=True)


def session_of(world, url: str):
    return world.client.v1.checkout.sessions.retrieve(url.rsplit("/", 1)[-1])


def test_it_gives_an_organization_one_trial_however_often_it_checks_out(stripe_world, org, owner):
    pro = Plan.objects.get(key="pro_monthly")
    url = subscriptions.checkout_start(organization=org, plan=pro, actor=owner)
    assert session_of(stripe_world, url).amount_total == 0  # the first checkout starts a trial
    assert pay_hosted_checkout(url).status_code == 303
    first = OrgSubscription.objects.get(organization=org)
    assert first.status == "trialing"
    record = TrialRecord.objects.get(organization=org)
    assert record.stripe_subscription_id == first.stripe_subscription_id
    assert balance_of(org) == 1_000

    # Cancel during the trial: it runs to its end and the subscription is over, nothing paid.
    subscriptions.subscription_cancel(organization=org, actor=owner)
    stripe_world.advance_past_period_end(org)
    assert OrgSubscription.objects.get(organization=org).status == "canceled"
    assert not Payment.objects.filter(organization=org, amount_paid__gt=0).exists()
    # What the trial granted is no longer spendable, with a ledger line saying so.
    assert balance_of(org) == 0
    assert CreditTransaction.objects.filter(type="expiry").get().amount == -1_000

    # Checking out again: no second trial; the first period is paid at once.
    url = subscriptions.checkout_start(organization=org, plan=pro, actor=owner)
    assert session_of(stripe_world, url).amount_total == 4_900
    assert pay_hosted_checkout(url).status_code == 303
    second = OrgSubscription.objects.get(organization=org)
    assert second.stripe_subscription_id != first.stripe_subscription_id
    assert (second.status, second.trial_end) == ("active", None)
    assert Payment.objects.get(organization=org, amount_paid__gt=0).amount_paid == 4_900
    assert balance_of(org) == 1_000  # the paid period's allowance, and only it
    assert TrialRecord.objects.get(organization=org).stripe_subscription_id == first.stripe_subscription_id

    for event in Event.objects.all():
        dispatch.handle(event.id)
    assert balance_of(org) == 1_000
    assert_reconciles()


def test_it_ends_at_once_a_second_trial_started_for_the_same_customer(stripe_world, org, owner):
    """A trial that did not come through Tally's checkout (the Stripe dashboard, an old open
    session) is refused on Stripe's side too: Tally ends it, so the first period is paid."""
    url = subscriptions.checkout_start(
        organization=org, plan=Plan.objects.get(key="pro_monthly"), actor=owner
    )
    pay_hosted_checkout(url)
    first = stripe_world.client.v1.subscriptions.retrieve(
        OrgSubscription.objects.get(organization=org).stripe_subscription_id
    )
    stripe_world.client.v1.subscriptions.cancel(first.id)  # from the dashboard
    assert balance_of(org) == 0

    again = stripe_world.client.v1.subscriptions.create(
        {
            "customer": first.customer,
            "items": [
                {"price": i.stripe_price_id, "quantity": 1}
                for i in Plan.objects.get(key="pro_monthly").line_items.all()
            ],
            "trial_period_days": 14,
            "default_payment_method": first.default_payment_method,
            "metadata": {"tally_org_id": str(org.pk)},
        }
    )
    remote = stripe_world.client.v1.subscriptions.retrieve(again.id)
    assert remote.status == "active" and remote.trial_end <= stripe_world.now()
    local = OrgSubscription.objects.get(organization=org)
    assert (local.stripe_subscription_id, local.status) == (again.id, "active")
    assert Payment.objects.get(organization=org, amount_paid__gt=0).amount_paid == 4_900
    # One allowance: the paid period's. The refused trial granted nothing.
    assert CreditTransaction.objects.filter(type="allowance").count() == 2  # the first trial's, the paid one
    assert balance_of(org) == 1_000
    assert_reconciles()


def test_checkout_offers_no_trial_to_a_customer_that_had_one(stripe_world, org, owner):
    customer = customer_ensure(organization=org)
    # The customer had its trial while it belonged to another organization (staff re-linked it
    # in the dashboard): the customer's record alone refuses another trial.
    earlier = OrganizationFactory(name="Acme (old)", slug="acme-old")
    TrialRecord.objects.create(
        organization=earlier, stripe_customer_id=customer, stripe_subscription_id="sub_earlier"
    )
    url = subscriptions.checkout_start(
        organization=org, plan=Plan.objects.get(key="pro_monthly"), actor=owner
    )
    assert session_of(stripe_world, url).amount_total == 4_900
