"""An auto-recharge whose card asks for authentication is not a silent failure: it turns
itself off and the billing contacts are asked, with the link where they act on it."""

import pytest
from django.core import mail

from billing.gateway.customers import customer_ensure
from billing.models import Notice, NoticeKind
from billing.notifications import notice_preferences_update
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
    assert "Buy credits and confirm the card: http" in email.body and "/o/acme/credits/" in email.body
    assert "/o/acme/credits/" in email.alternatives[0][0]
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
