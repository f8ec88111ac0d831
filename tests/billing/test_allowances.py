"""A plan's credit allowance ends with the subscription: however it ends at once (a money-back
refund, canceled now or deleted in the Stripe dashboard, `unpaid` after failed retries, the
organization deleted), what remains of the period's allowance expires, with a ledger line, once."""

import pytest
from djstripe.models import Event

from billing import subscriptions
from billing.gateway.customers import customer_ensure
from billing.models import OrgSubscription, Plan
from billing.webhooks import dispatch
from credits import services as credit_services
from credits.models import CreditTransaction
from teams import services as team_services
from teams.models import Membership
from tests.credits.helpers import assert_reconciles, balance_of

pytestmark = pytest.mark.django_db(transaction=True)


def subscribe_pro(world, org) -> OrgSubscription:
    """Pro monthly without a trial, paid by card, as the dashboard would create it."""
    customer = customer_ensure(organization=org)
    card = world.client.v1.payment_methods.attach("pm_card_visa", {"customer": customer})
    world.client.v1.subscriptions.create(
        {
            "customer": customer,
            "items": [
                {"price": i.stripe_price_id, "quantity": 1}
                for i in Plan.objects.get(key="pro_monthly").line_items.all()
            ],
            "default_payment_method": card.id,
            "metadata": {"tally_org_id": str(org.pk)},
        }
    )
    return OrgSubscription.objects.get(organization=org)


def end_by_refund(world, org, owner, sub):
    subscriptions.subscription_refund_and_cancel(organization=org, actor=owner)


def end_in_the_dashboard(world, org, owner, sub):
    world.client.v1.subscriptions.cancel(sub.stripe_subscription_id)


def end_unpaid(world, org, owner, sub):
    world.sim.store.config.after_retries = "unpaid"
    customer = customer_ensure(organization=org)
    failing = world.client.v1.payment_methods.attach("pm_card_chargeCustomerFail", {"customer": customer})
    world.client.v1.subscriptions.update(sub.stripe_subscription_id, {"default_payment_method": failing.id})
    world.advance_past_period_end(org)
    assert OrgSubscription.objects.get(organization=org).status == "past_due"
    for _ in range(10):  # day by day through Stripe's retries, until it gives up
        world.advance_to(world.now() + 2 * 86400)
        if OrgSubscription.objects.get(organization=org).status != "past_due":
            break


def end_by_deleting_the_organization(world, org, owner, sub):
    team_services.organization_delete(
        organization=org, actor=Membership.objects.get(organization=org, user=owner), confirm=org.name
    )


@pytest.mark.parametrize(
    "end", [end_by_refund, end_in_the_dashboard, end_unpaid, end_by_deleting_the_organization]
)
def test_an_immediate_end_expires_what_remains_of_the_allowance(stripe_world, org, owner, end):
    sub = subscribe_pro(stripe_world, org)
    assert sub.status == "active" and balance_of(org) == 1_000
    credit_services.credits_consume(organization=org, amount=300, idempotency_key="spent")

    end(stripe_world, org, owner, sub)
    local = OrgSubscription.objects.get(organization=org)
    assert local.status in ("canceled", "unpaid")
    assert balance_of(org) == 0  # without waiting for the expiry job
    expiry = CreditTransaction.objects.get(type="expiry")
    assert (expiry.amount, expiry.balance_after) == (-700, 0)

    # Every event delivered again, twice: the allowance expired once.
    events = list(Event.objects.values_list("id", flat=True))
    for event_id in events + events:
        dispatch.handle(event_id)
    subscriptions.subscription_sync(subscription_id=sub.stripe_subscription_id)
    assert CreditTransaction.objects.filter(type="expiry").count() == 1
    assert balance_of(org) == 0
    assert_reconciles()


def test_credits_bought_separately_stay_when_the_subscription_ends(stripe_world, org, owner):
    sub = subscribe_pro(stripe_world, org)
    credit_services.credits_grant(organization=org, amount=500, source="bonus", idempotency_key="welcome")
    end_in_the_dashboard(stripe_world, org, owner, sub)
    assert balance_of(org) == 500
    assert_reconciles()
