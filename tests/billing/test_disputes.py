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
