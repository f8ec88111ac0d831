"""A disputed subscription payment, end to end on the simulator (Stripe's dispute test card,
webhooks through dj-stripe's endpoint on a live server): access is restricted like an unpaid
invoice's, and comes back when the dispute is won or a later invoice is paid."""

from datetime import timedelta

import pytest
from django.core import mail
from djstripe.models import Event

from billing import entitlements, subscriptions
from billing.gateway.customers import customer_ensure
from billing.models import Access, OrgSubscription, Payment, PaymentDispute, Plan
from billing.webhooks import dispatch
from common.errors import ServiceError
from tests.billing.test_lifecycle import clock_now, past_period_end, pay_hosted_checkout

pytestmark = pytest.mark.django_db(transaction=True)


def subscribe_with_the_dispute_card(world):
    client, clock, org, owner = world
    url = subscriptions.checkout_start(
        organization=org, plan=Plan.objects.get(key="ai_monthly"), actor=owner, test_clock=clock
    )
    assert pay_hosted_checkout(url, card="4000000000000259").status_code == 303
    sub = OrgSubscription.objects.get(organization=org)
    (dispute,) = client.v1.disputes.list({"limit": 10}).data
    return sub, dispute


def test_a_disputed_subscription_payment_restricts_access_until_the_dispute_is_won(world, settings):
    client, clock, org, owner = world
    mail.outbox.clear()
    sub, dispute = subscribe_with_the_dispute_card(world)
    first = Payment.objects.get(organization=org)
    record = PaymentDispute.objects.get()
    assert (record.payment, record.status, record.amount) == (first, "open", first.amount_paid)
    # Stripe keeps the subscription active; Tally treats the payment as unpaid: the grace period.
    now = clock_now(client, clock)
    assert sub.status == "active" and sub.dispute_grace_until == record.opened_at + timedelta(
        days=settings.BILLING_GRACE_DAYS
    )
    assert sub.access_at(now) == Access.FULL
    later = sub.dispute_grace_until
    assert sub.access_at(later) == Access.RESTRICTED
    blocked = entitlements.check(org, "ai_generations", now=later)
    assert (blocked.allowed, blocked.reason) == (False, "restricted")
    assert any(m.subject.endswith("payment disputed") and "olivia@example.com" in m.to for m in mail.outbox)

    # The dispute is won with evidence: full access again, at once.
    client.v1.disputes.update(dispute.id, {"evidence": {"uncategorized_text": "winning_evidence"}})
    sub.refresh_from_db()
    assert sub.dispute_grace_until is None and sub.access_at(later) == Access.FULL
    assert entitlements.check(org, "ai_generations", now=later).allowed
    assert PaymentDispute.objects.get().status == "won"
    sent = len(mail.outbox)

    for event in Event.objects.filter(type__startswith="charge.dispute."):
        dispatch.handle(event.id)
    sub.refresh_from_db()
    assert sub.dispute_grace_until is None and len(mail.outbox) == sent


def test_a_lost_dispute_keeps_access_restricted_until_a_later_invoice_is_paid(world):
    client, clock, org, owner = world
    sub, dispute = subscribe_with_the_dispute_card(world)
    client.v1.disputes.close(dispute.id)
    sub.refresh_from_db()
    later = sub.dispute_grace_until
    assert later is not None and sub.access_at(later) == Access.RESTRICTED
    assert PaymentDispute.objects.get().status == "lost"

    # A good card pays the renewal: the period is paid for again, access comes back.
    customer = customer_ensure(organization=org)
    visa = client.v1.payment_methods.attach("pm_card_visa", {"customer": customer})
    client.v1.customers.update(customer, {"invoice_settings": {"default_payment_method": visa.id}})
    client.v1.subscriptions.update(sub.stripe_subscription_id, {"default_payment_method": visa.id})
    now = past_period_end(client, clock, org)
    sub.refresh_from_db()
    assert sub.dispute_grace_until is None and sub.access_at(now) == Access.FULL


def _allowance_grants(org):
    from credits.models import CreditGrant, GrantSource

    return list(
        CreditGrant.objects.filter(
            account__organization=org, source=GrantSource.SUBSCRIPTION_ALLOWANCE
        ).order_by("created_at", "pk")
    )


def _pro_renewal_disputed(world):
    """Pro monthly's trial on the dispute card; the first paid month is disputed at once."""
    client, clock, org, owner = world
    url = subscriptions.checkout_start(
        organization=org, plan=Plan.objects.get(key="pro_monthly"), actor=owner, test_clock=clock
    )
    assert pay_hosted_checkout(url, card="4000000000000259").status_code == 303
    past_period_end(client, clock, org)  # the trial ends; the first month is charged
    (dispute,) = client.v1.disputes.list({"limit": 10}).data
    return dispute


@pytest.mark.parametrize("outcome", ["won", "lost"])
def test_a_disputed_renewal_holds_back_the_periods_allowance_until_the_dispute_closes(world, outcome):
    # Nothing is granted that was not paid for: while the card network holds the month's money,
    # the month's credit allowance cannot be spent; won, it is released; lost, it is taken back.
    from credits import reconcile as credit_reconcile
    from credits import services as credit_services

    client, clock, org, owner = world
    dispute = _pro_renewal_disputed(world)
    trial, month = _allowance_grants(org)
    assert (month.amount, month.disputed) == (1_000, 1_000)
    account = credit_services.credit_account_for(organization=org)
    before = account.balance
    assert credit_services.credits_spendable(account=account) == before - 1_000
    assert credit_reconcile.credit_invariants_check(organizations=[org]) == []

    evidence = "winning_evidence" if outcome == "won" else "losing_evidence"
    client.v1.disputes.update(dispute.id, {"evidence": {"uncategorized_text": evidence}, "submit": True})
    month.refresh_from_db()
    if outcome == "won":
        assert (month.disputed, month.revoked, month.remaining) == (0, 0, 1_000)
    else:
        assert (month.disputed, month.revoked, month.remaining) == (0, 1_000, 0)
    account.refresh_from_db()
    assert account.balance == (before if outcome == "won" else before - 1_000)
    assert credit_services.credits_spendable(account=account) == account.balance
    assert credit_reconcile.credit_invariants_check(organizations=[org]) == []


def test_a_disputed_first_payment_is_not_refunded_by_the_money_back_guarantee(world):
    # Found by the lifecycle machine (seed 4165131130): Stripe refuses to refund a charged-back
    # payment, and the refund view answered with Stripe's error after canceling the subscription.
    # The dispute gives the money back if the customer wins it: the guarantee refuses, and
    # changes nothing.
    client, clock, org, owner = world
    sub, dispute = subscribe_with_the_dispute_card(world)
    with pytest.raises(ServiceError) as refused:
        subscriptions.subscription_refund_and_cancel(organization=org, actor=owner)
    assert refused.value.code == "payment_disputed" and refused.value.status == 409
    remote = client.v1.subscriptions.retrieve(sub.stripe_subscription_id)
    assert remote.status == "active"
    assert client.v1.refunds.list({"limit": 10}).data == []
    sub.refresh_from_db()
    assert sub.status == "active"
