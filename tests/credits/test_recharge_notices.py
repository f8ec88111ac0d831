"""An auto-recharge whose card asks for authentication is not a silent failure: it turns
itself off and the billing contacts are asked, with the link where they act on it."""

import uuid
from urllib.parse import urlsplit

import pytest
import requests
from django.core import mail
from djstripe.models import Event

from billing.gateway.customers import customer_ensure
from billing.models import Notice, NoticeKind
from billing.notifications import notice_preferences_update
from billing.webhooks import dispatch
from credits import services
from credits.models import CreditAccount, CreditRecharge
from tests.credits.test_purchases import _enable, buy, shop  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_recharge_that_needs_authentication_asks_for_it_by_email(shop, org, owner):  # noqa: F811
    buy(org, owner, "tokens-1k")
    customer = customer_ensure(organization=org)
    card = shop.v1.payment_methods.attach("pm_card_authenticationRequired", {"customer": customer})
    shop.v1.customers.update(customer, {"invoice_settings": {"default_payment_method": card.id}})
    _enable(org, owner, threshold=500)
    mail.outbox.clear()

    services.credits_consume(organization=org, amount=600, idempotency_key="a")

    recharge = CreditRecharge.objects.get()
    assert (recharge.status, recharge.failure_code) == ("failed", "authentication_required")
    assert not CreditAccount.objects.get(organization=org).auto_recharge_enabled
    (email,) = [m for m in mail.outbox if "auto-recharge" in m.subject]
    assert email.subject == "Acme: your bank asks you to confirm a credits auto-recharge"
    assert "Your bank wants you present to confirm payments with this card" in email.body
    # The link leads to where this payment is confirmed, not to the credits page.
    link = f"/o/acme/credits/recharges/{recharge.code}/"
    assert "Confirm the payment: http" in email.body and link in email.body
    assert link in email.alternatives[0][0]
    assert Notice.objects.get(kind=NoticeKind.RECHARGE_FAILED).status == Notice.Status.SENT
    # A redelivered task sends nothing more.
    assert not services.credit_recharge_failed_alert_send(recharge_id=recharge.pk)
    assert len([m for m in mail.outbox if "auto-recharge" in m.subject]) == 1


def test_a_recharge_that_goes_through_is_told_once(shop, org, owner):  # noqa: F811
    buy(org, owner, "tokens-1k")  # saves the card; 1,000 credits
    _enable(org, owner, threshold=500)
    mail.outbox.clear()

    services.credits_consume(organization=org, amount=600, idempotency_key="a")

    recharge = CreditRecharge.objects.get()
    assert recharge.status == "succeeded"
    (email,) = [m for m in mail.outbox if "auto-recharge" in m.subject]
    assert email.subject == "Acme: credits auto-recharge done"
    assert email.to == ["alice@example.com"]
    assert "Tally bought 10,000 credits ($10 pack) and charged $10 to the saved card" in email.body
    assert "The balance is now 10,400 credits." in email.body
    assert "See your credits: http" in email.body and "/o/acme/credits/" in email.alternatives[0][0]
    # A replay (the charge's outcome recorded again, a resumed recharge) tells nothing more.
    services.credit_recharge_succeed(recharge=recharge, payment_intent_id=recharge.payment_intent_id)
    assert services.credit_auto_recharge_start(account_id=recharge.account_id) is None
    assert len([m for m in mail.outbox if "auto-recharge" in m.subject]) == 1
    assert Notice.objects.filter(kind=NoticeKind.RECHARGE_SUCCEEDED).count() == 1


def test_a_contact_can_turn_off_the_recharge_receipt(shop, org, owner):  # noqa: F811
    buy(org, owner, "tokens-1k")
    _enable(org, owner, threshold=500)
    notice_preferences_update(organization=org, user=owner, muted=[NoticeKind.RECHARGE_SUCCEEDED])
    mail.outbox.clear()
    services.credits_consume(organization=org, amount=600, idempotency_key="a")
    assert CreditRecharge.objects.get().status == "succeeded"
    assert [m for m in mail.outbox if "auto-recharge" in m.subject] == []
    assert Notice.objects.get(kind=NoticeKind.RECHARGE_SUCCEEDED).status == Notice.Status.SKIPPED


def _awaiting_authentication(shop, org, owner):  # noqa: F811
    buy(org, owner, "tokens-1k")
    customer = customer_ensure(organization=org)
    card = shop.v1.payment_methods.attach("pm_card_authenticationRequired", {"customer": customer})
    shop.v1.customers.update(customer, {"invoice_settings": {"default_payment_method": card.id}})
    _enable(org, owner, threshold=500)
    services.credits_consume(organization=org, amount=600, idempotency_key="a")
    recharge = CreditRecharge.objects.get()
    assert recharge.failure_code == "authentication_required" and recharge.payment_intent_id
    return recharge


def test_the_recharge_is_confirmed_where_the_link_leads_and_granted_once(
    shop,  # noqa: F811
    org,
    owner,
    client_for,
    settings,
):
    recharge = _awaiting_authentication(shop, org, owner)
    balance = CreditAccount.objects.get(organization=org).balance
    client = client_for(owner)
    page = f"/o/{org.slug}/credits/recharges/{recharge.code}/"
    # The banner on the credits page leads there too.
    credits_page = client.get(f"/o/{org.slug}/credits/").content.decode()
    assert "Your bank asks you to confirm" in credits_page and page in credits_page
    shown = client.get(page).content.decode()
    assert "$10" in shown and "10,000 credits" in shown and "Confirm with your bank" in shown

    # Confirming sends the person to the bank's step for this PaymentIntent, which returns here.
    started = client.post(page)
    assert started.status_code == 302
    step = started["Location"]
    assert step == f"{settings.STRIPE_API_HOST}/authenticate/{recharge.payment_intent_id}"
    answered = requests.post(step, data={"authentication": "complete"}, allow_redirects=False, timeout=30)
    assert answered.status_code == 303
    # `payment_intent.succeeded`, delivered to the webhook endpoint, granted it already.
    recharge.refresh_from_db()
    assert recharge.status == "succeeded"
    assert CreditAccount.objects.get(organization=org).balance == balance + 10_000
    back = urlsplit(answered.headers["Location"])
    assert back.path == page and f"payment_intent={recharge.payment_intent_id}" in back.query
    done = client.get(f"{back.path}?{back.query}").content.decode()
    assert "The payment is confirmed" in done

    recharge.refresh_from_db()
    assert recharge.status == "succeeded" and recharge.transaction is not None
    assert CreditAccount.objects.get(organization=org).balance == balance + 10_000
    # The return, the webhook (delivered and replayed) and the page seen again grant it once.
    for event in Event.objects.filter(type="payment_intent.succeeded"):
        dispatch.handle(event.id)
    client.get(f"{back.path}?{back.query}")
    client.post(page)
    assert CreditAccount.objects.get(organization=org).balance == balance + 10_000
    assert "Your bank asks you to confirm" not in client.get(f"/o/{org.slug}/credits/").content.decode()


def test_a_failed_confirmation_grants_nothing_and_says_so(shop, org, owner, client_for):  # noqa: F811
    recharge = _awaiting_authentication(shop, org, owner)
    balance = CreditAccount.objects.get(organization=org).balance
    client = client_for(owner)
    page = f"/o/{org.slug}/credits/recharges/{recharge.code}/"
    step = client.post(page)["Location"]
    answered = requests.post(step, data={"authentication": "fail"}, allow_redirects=False, timeout=30)
    back = urlsplit(answered.headers["Location"])
    shown = client.get(f"{back.path}?{back.query}").content.decode()
    assert "The payment was not confirmed" in shown and "Confirm with your bank" in shown
    recharge.refresh_from_db()
    assert recharge.status == "failed" and recharge.transaction is None
    assert CreditAccount.objects.get(organization=org).balance == balance


def test_only_the_billing_roles_of_the_organization_see_the_recharge(
    shop,  # noqa: F811
    org,
    owner,
    member,
    outsider,
    client_for,
):
    recharge = _awaiting_authentication(shop, org, owner)
    page = f"/o/{org.slug}/credits/recharges/{recharge.code}/"
    assert client_for(outsider).get(page).status_code == 404
    assert client_for(outsider).post(page).status_code == 404
    assert client_for(member).get(page).status_code == 403
    assert client_for(owner).get(f"/o/{org.slug}/credits/recharges/{uuid.uuid4()}/").status_code == 404
