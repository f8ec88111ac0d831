"""Who gets billing mail: one rule, `Organization.billing_contacts()`, for every billing email."""

import pytest
from django.core import mail
from django.utils import timezone

from billing.models import Feature, UsageAlert
from billing.notifications import send_usage_alert
from credits.models import GrantSource
from credits.services import credits_grant
from credits.services.alerts import credits_low_balance_alert_send
from teams.models import Organization

pytestmark = pytest.mark.django_db


def test_it_names_the_members_who_manage_billing_and_the_billing_address(
    org, owner, admin, billing_manager, member
):
    Organization.objects.filter(pk=org.pk).update(billing_email="invoices@example.com")
    org.refresh_from_db()
    assert org.billing_contacts() == sorted(
        {owner.email, admin.email, billing_manager.email, "invoices@example.com"}
    )
    assert member.email not in org.billing_contacts()


def test_it_names_an_address_once_when_a_member_is_also_the_billing_address(org, owner):
    Organization.objects.filter(pk=org.pk).update(billing_email=owner.email)
    org.refresh_from_db()
    assert org.billing_contacts() == [owner.email]


def test_usage_and_credit_alerts_go_to_the_same_people(org, owner, admin, member):
    Organization.objects.filter(pk=org.pk).update(billing_email="invoices@example.com")
    org.refresh_from_db()
    alert = UsageAlert.objects.create(
        organization=org,
        feature=Feature.objects.get(key="api_calls"),
        period_start=timezone.now(),
        threshold=80,
        used=80,
        limit=100,
    )
    send_usage_alert(alert.pk)
    entry = credits_grant(
        organization=org, amount=10, source=GrantSource.PROMOTION, idempotency_key="notifications-test"
    )
    credits_low_balance_alert_send(account_id=entry.account_id, transaction_id=entry.pk)
    assert len(mail.outbox) == 2
    assert mail.outbox[0].to == mail.outbox[1].to == org.billing_contacts()
    assert sorted(mail.outbox[0].to) == sorted({owner.email, admin.email, "invoices@example.com"})
