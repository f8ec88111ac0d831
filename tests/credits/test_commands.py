import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from credits import services
from credits.models import CreditAccount, CreditPackage, CreditPrice, CreditTransaction
from teams.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_it_adds_a_package_from_the_command_line():
    call_command(
        "credit_package_add", "enterprise-1m", "Enterprise 1M", "1000000", "99900", "--bonus", "200000"
    )
    package = CreditPackage.objects.get(code="enterprise-1m")
    assert (package.total_credits, package.unit_amount, package.currency) == (1_200_000, 99_900, "usd")
    with pytest.raises(CommandError, match="already exists"):
        call_command("credit_package_add", "enterprise-1m", "Again", "10", "100")
    with pytest.raises(CommandError, match="three-letter"):
        call_command("credit_package_add", "x", "X", "10", "100", "--currency", "dollars")


def test_it_seeds_packages_and_prices_once():
    call_command("credits_seed")
    counts = CreditPackage.objects.count(), CreditPrice.objects.count()
    call_command("credits_seed")
    assert (CreditPackage.objects.count(), CreditPrice.objects.count()) == counts == (7, 5)


def test_reconcile_passes_then_catches_a_tampered_balance(org, fund):
    fund(10, source="promotion")  # a purchase would need its payment in Stripe (I3)
    services.credits_consume(organization=org, amount=4, idempotency_key="a")
    call_command("credits_reconcile")
    CreditAccount.objects.update(balance=7)
    with pytest.raises(CommandError, match="discrepancies"):
        call_command("credits_reconcile")


def test_the_expiry_job_runs_from_the_command_line(org, fund):
    call_command("credits_expire")
    assert not CreditTransaction.objects.filter(type="expiry").exists()


def test_staff_adjust_a_balance_in_the_admin_and_it_is_audited(client, org, fund, owner):
    owner.is_staff = owner.is_superuser = True
    owner.save()
    fund(10)
    account = CreditAccount.objects.get(organization=org)
    client.force_login(owner)
    url = reverse("admin:credits_creditaccount_adjust", args=[account.pk])
    assert client.get(url).status_code == 200
    response = client.post(url, {"amount": -3, "reason": "Double charge on 3 Nov"})
    assert response.status_code == 302
    assert CreditAccount.objects.get(pk=account.pk).balance == 7
    assert AuditEvent.objects.get(action="credits.adjusted").actor == owner
    for name in ("creditaccount", "credittransaction", "creditgrant", "creditpackage", "creditprice"):
        assert client.get(reverse(f"admin:credits_{name}_changelist")).status_code == 200


def test_saving_an_account_in_the_admin_never_rewrites_its_balance(client, org, fund, owner):
    owner.is_staff = owner.is_superuser = True
    owner.save()
    fund(10)
    account = CreditAccount.objects.get(organization=org)
    client.force_login(owner)
    url = reverse("admin:credits_creditaccount_change", args=[account.pk])
    form = client.get(url)
    assert form.status_code == 200
    services.credits_consume(organization=org, amount=4, idempotency_key="meanwhile")
    response = client.post(
        url,
        {
            "overdraft_allowance": 5,
            "low_balance_threshold": 100,
            "low_balance_percent": 0,
            "auto_recharge_threshold": 0,
            "auto_recharge_monthly_limit": 0,
        },
    )
    assert response.status_code == 302
    account.refresh_from_db()
    assert (account.balance, account.overdraft_allowance) == (6, 5)
    assert AuditEvent.objects.filter(action="credits.account_changed").exists()
