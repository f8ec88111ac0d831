from datetime import timedelta

import pytest
from django.core import mail
from django.db import IntegrityError
from django.utils import timezone

from common.errors import ServiceError
from credits import selectors, services
from credits.models import CreditAccount, CreditPackage, CreditRecharge, CreditTransaction, CreditUsageDay

pytestmark = pytest.mark.django_db


def _consume(org, amount, key):
    return services.credits_consume(organization=org, amount=amount, idempotency_key=key)


def test_it_emails_the_billing_contacts_once_per_crossing(
    org, owner, fund, account, django_capture_on_commit_callbacks
):
    CreditAccount.objects.filter(pk=account.pk).update(low_balance_threshold=50)
    fund(100)
    with django_capture_on_commit_callbacks(execute=True):
        _consume(org, 40, "a")  # 60: above
        _consume(org, 15, "b")  # 45: crosses
        _consume(org, 5, "c")  # 40: still low, no second email
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["alice@example.com"]
    assert "Acme has 40 credits left" in mail.outbox[0].body  # the balance when it is sent
    assert "about 4 days" in mail.outbox[0].body
    assert "running low" in mail.outbox[0].subject
    with django_capture_on_commit_callbacks(execute=True):
        fund(100)  # back above
        _consume(org, 100, "d")  # crosses again
    assert len(mail.outbox) == 2


def test_a_duplicate_alert_task_sends_one_email(org, owner, fund, account):
    CreditAccount.objects.filter(pk=account.pk).update(low_balance_threshold=50)
    fund(60)
    entry = _consume(org, 20, "a")
    assert services.credits_low_balance_alert_send(account_id=account.pk, transaction_id=entry.pk)
    assert not services.credits_low_balance_alert_send(account_id=account.pk, transaction_id=entry.pk)
    assert len(mail.outbox) == 1


def test_it_estimates_the_runway_from_the_last_seven_days(org, fund, account):
    fund(1000)
    assert selectors.runway_days(account) is None
    _consume(org, 70, "a")
    old = _consume(org, 500, "b")
    then = timezone.now() - timedelta(days=8)
    CreditTransaction.objects.filter(pk=old.pk).update(created_at=then)
    # Its day in the rollup, as the debit would have written it eight days ago.
    today = CreditUsageDay.objects.get(account=account)
    CreditUsageDay.objects.filter(pk=today.pk).update(credits=70, consumptions=1)
    CreditUsageDay.objects.create(
        organization=org, account=account, day=then.date(), action="", credits=500, consumptions=1
    )
    account.refresh_from_db()
    assert account.balance == 430
    assert selectors.runway_days(account) == 43  # 70 credits a week = 10 a day


@pytest.fixture
def pack(db):
    return services.credit_package_create(code="pack-10", name="$10", credits=1000, unit_amount=1000)


def _enable(org, owner, pack, *, limit=5000, threshold=100):
    return services.credit_account_update(
        organization=org,
        actor=owner,
        low_balance_threshold=0,
        auto_recharge_enabled=True,
        auto_recharge_threshold=threshold,
        auto_recharge_package=pack,
        auto_recharge_monthly_limit=limit,
    )


def _switched_on_then_card_removed(org, pack, *, limit=5000, threshold=100):
    """Auto-recharge on with no card to charge: settings refuse that (test_purchase_pages.py),
    but the card can go away afterwards, and the recharge must cope."""
    CreditAccount.objects.filter(organization=org).update(
        auto_recharge_enabled=True,
        auto_recharge_threshold=threshold,
        auto_recharge_package=pack,
        auto_recharge_monthly_limit=limit,
    )


def test_a_threshold_crossing_starts_one_recharge(org, owner, fund, pack, django_capture_on_commit_callbacks):
    services.credit_account_for(organization=org)
    _switched_on_then_card_removed(org, pack)
    fund(150)
    with django_capture_on_commit_callbacks(execute=True):
        _consume(org, 30, "a")  # 120: above
        _consume(org, 30, "b")  # 90: crosses
        _consume(org, 30, "c")  # 60: no new crossing
    recharge = CreditRecharge.objects.get()
    # No card (no Stripe customer): recorded as failed, nothing granted, and
    # auto-recharge is off. Charging a real card is in test_purchases.py.
    assert (recharge.status, recharge.failure_code) == ("failed", "no_saved_card")
    account = CreditAccount.objects.get(organization=org)
    assert (account.balance, account.auto_recharge_enabled) == (60, False)


def test_the_database_allows_one_recharge_in_flight(org, owner, fund, pack, account):
    _switched_on_then_card_removed(org, pack)
    CreditRecharge.objects.create(
        organization=org, account=account, package=pack, credits=1000, amount=1000, currency="usd"
    )
    assert services.credit_auto_recharge_start(account_id=account.pk) is None
    with pytest.raises(IntegrityError):
        CreditRecharge.objects.create(
            organization=org, account=account, package=pack, credits=1000, amount=1000, currency="usd"
        )


def test_it_skips_a_recharge_beyond_the_monthly_limit(org, owner, pack, account):
    _switched_on_then_card_removed(org, pack, limit=1500)
    CreditRecharge.objects.create(
        organization=org,
        account=account,
        package=pack,
        credits=1000,
        amount=1000,
        currency="usd",
        status="succeeded",
    )
    recharge = services.credit_auto_recharge_start(account_id=account.pk)
    assert (recharge.status, recharge.failure_code) == ("skipped", "monthly_limit")


def test_a_succeeded_recharge_grants_its_credits_once(org, owner, pack, account):
    recharge = CreditRecharge.objects.create(
        organization=org, account=account, package=pack, credits=1000, amount=1000, currency="usd"
    )
    services.credit_recharge_succeed(recharge=recharge, payment_intent_id="pi_1")
    services.credit_recharge_succeed(recharge=recharge, payment_intent_id="pi_1")
    recharge.refresh_from_db()
    assert recharge.status == "succeeded" and recharge.transaction.amount == 1000
    account.refresh_from_db()
    assert (account.balance, account.lifetime_purchased) == (1000, 1000)


def test_recharge_settings_are_checked(org, owner, pack):
    with pytest.raises(ServiceError) as refused:
        _enable(org, owner, pack, limit=500)
    assert refused.value.field == "auto_recharge_monthly_limit"
    with pytest.raises(ServiceError) as refused:
        _enable(org, owner, pack, threshold=0)
    assert refused.value.field == "auto_recharge_threshold"
    CreditPackage.objects.update(is_active=False)
    pack.refresh_from_db()
    with pytest.raises(ServiceError) as refused:
        _enable(org, owner, pack)
    assert refused.value.field == "auto_recharge_package"
    assert not CreditAccount.objects.filter(organization=org, auto_recharge_enabled=True).exists()
