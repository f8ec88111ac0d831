"""What the owner reads after a second subscription was canceled: what became of its payment."""

import pytest
from django.core import mail

from billing.models import SubscriptionDuplicate
from billing.notifications import send_duplicate_subscription_refunded

pytestmark = pytest.mark.django_db


def _email(org, owner, **amounts) -> str:
    duplicate = SubscriptionDuplicate.objects.create(
        organization=org, stripe_subscription_id="sub_2", kept_subscription_id="sub_1", **amounts
    )
    send_duplicate_subscription_refunded(duplicate.pk)
    (message,) = mail.outbox
    assert "refunded" not in message.subject  # the subject promises nothing it may not have done
    return message.body


def test_it_says_what_was_refunded(org, owner):
    body = _email(org, owner, amount_refunded=4900)
    assert "refunded its payment of $49 in full" in body and "disputed" not in body


def test_it_says_nothing_was_charged_only_when_nothing_was(org, owner):
    assert "it had not charged anything" in _email(org, owner)


def test_it_does_not_claim_a_disputed_payment_was_never_charged(org, owner):
    body = _email(org, owner, amount_disputed=4900)
    assert "had not charged anything" not in body and "refunded its payment" not in body
    assert "Its payment of $49 was disputed with your bank" in body


def test_it_names_both_when_one_payment_was_refunded_and_another_disputed(org, owner):
    body = _email(org, owner, amount_refunded=4900, amount_disputed=2500, currency="eur")
    assert "refunded its payment of €49 in full" in body
    assert "Another payment of €25 was disputed" in body
