"""Card authentication (3D Secure) end to end on the simulator, driven by its test clock, webhooks
through dj-stripe's endpoint on a live server: a renewal the bank asks the cardholder to confirm
is past due with a banner and an email linking to the hosted invoice page, access follows the
grace rules of a failed payment, and confirming it there restores everything at once."""

import pytest
import requests
from django.core import mail
from djstripe.models import Event

from billing import entitlements, subscriptions
from billing.models import Access, OrgSubscription, Payment, Plan
from billing.webhooks import dispatch
from tests.billing.test_lifecycle import clock_now, past_period_end, pay_hosted_checkout

pytestmark = pytest.mark.django_db(transaction=True)

ALWAYS = "4000002760003184"  # asks on every payment, off-session renewals too
ON_SETUP = "4000002500003155"  # asks until the card is set up for off-session payments


def subscribe_through_checkout(world, card: str) -> OrgSubscription:
    _client, clock, org, owner = world
    url = subscriptions.checkout_start(
        organization=org, plan=Plan.objects.get(key="ai_monthly"), actor=owner, test_clock=clock
    )
    step = pay_hosted_checkout(url, card=card)
    assert step.status_code == 200 and "Authenticate this payment" in step.text
    paid = requests.post(
        url,
        data={"card_number": card, "email": "olivia@example.com", "authentication": "complete"},
        allow_redirects=False,
        timeout=30,
    )
    assert paid.status_code == 303
    sub = OrgSubscription.objects.get(organization=org)
    assert sub.status == "active"
    return sub


def authentication_mails() -> list:
    return [m for m in mail.outbox if "asks you to confirm a payment" in m.subject]


def test_a_renewal_that_needs_authentication_is_confirmed_on_the_hosted_invoice_page(world, client):
    stripe, clock, org, owner = world
    sub = subscribe_through_checkout(world, ALWAYS)
    mail.outbox.clear()

    now = past_period_end(stripe, clock, org)
    sub.refresh_from_db()
    assert sub.status == "past_due" and sub.grace_until is not None
    renewal = Payment.objects.get(organization=org, billing_reason="subscription_cycle")
    assert (renewal.status, renewal.needs_authentication) == ("failed", True)
    assert renewal.hosted_invoice_url

    # One email, to the billing contacts, with the link; not the update-your-card one.
    (notice,) = authentication_mails()
    assert notice.to == ["olivia@example.com"]
    assert renewal.hosted_invoice_url in notice.body
    assert not [m for m in mail.outbox if m.subject.startswith("Payment failed")]

    # The banner on the organization's pages links to the same page.
    client.force_login(owner)
    page = client.get(org.get_absolute_url())
    assert b"Your bank asks you to confirm a payment" in page.content
    assert renewal.hosted_invoice_url.encode() in page.content

    # The grace rules of a failed payment: full access until grace_until, then read-only.
    assert sub.access_at(now) == Access.FULL
    assert sub.access_at(sub.grace_until) == Access.RESTRICTED
    later = sub.grace_until

    # Failing the bank's step changes nothing on Tally's side but the request.
    failed = requests.post(renewal.hosted_invoice_url, data={"authentication": "fail"}, timeout=30)
    assert failed.status_code == 402
    sub.refresh_from_db()
    assert sub.status == "past_due"

    # Paying it again with the same card asks again; confirmed, it is paid: active at once.
    asked = requests.post(renewal.hosted_invoice_url, data={"card_number": ALWAYS}, timeout=30)
    assert "Authenticate this payment" in asked.text
    done = requests.post(renewal.hosted_invoice_url, data={"authentication": "complete"}, timeout=30)
    assert done.status_code == 200 and "Paid" in done.text
    sub.refresh_from_db()
    renewal.refresh_from_db()
    assert (sub.status, sub.grace_until) == ("active", None)
    assert (renewal.status, renewal.needs_authentication) == ("paid", False)
    assert entitlements.check(org, "ai_generations", now=later).allowed
    assert b"Your bank asks you" not in client.get(org.get_absolute_url()).content

    # Every event again, twice: the same state, and no second email.
    sent = len(mail.outbox)
    for event_id in list(Event.objects.values_list("id", flat=True)) * 2:
        dispatch.handle(event_id)
    sub.refresh_from_db()
    assert (sub.status, sub.grace_until) == ("active", None)
    assert len(mail.outbox) == sent


def test_a_card_authenticated_in_checkout_renews_without_asking_when_set_up_for_it(world):
    stripe, clock, org, _owner = world
    subscribe_through_checkout(world, ON_SETUP)
    mail.outbox.clear()
    past_period_end(stripe, clock, org)
    sub = OrgSubscription.objects.get(organization=org)
    renewal = Payment.objects.get(organization=org, billing_reason="subscription_cycle")
    assert (sub.status, renewal.status, renewal.needs_authentication) == ("active", "paid", False)
    assert not authentication_mails()
    assert clock_now(stripe, clock) > renewal.period_start
