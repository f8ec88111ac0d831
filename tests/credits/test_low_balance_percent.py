"""The low-balance threshold as a percentage of the last purchase or allowance ("10% remaining")."""

from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from common.errors import ServiceError
from credits import services
from credits.models import CreditAccount

pytestmark = pytest.mark.django_db


def _settings(org, owner, **values):
    values = {
        "low_balance_threshold": 0,
        "auto_recharge_enabled": False,
        "auto_recharge_threshold": 0,
        "auto_recharge_package": None,
        "auto_recharge_monthly_limit": 0,
        **values,
    }
    return services.credit_account_update(organization=org, actor=owner, **values)


def _threshold(org) -> tuple[int, int]:
    account = CreditAccount.objects.get(organization=org)
    return account.low_balance_threshold, account.low_balance_percent


def test_it_counts_the_threshold_from_the_last_purchase_and_follows_the_next(org, owner, fund):
    fund(2000)
    _settings(org, owner, low_balance_percent=10)
    assert _threshold(org) == (200, 10)
    fund(10_005)  # rounded down, in integers: 10% of 10,005 is 1,000
    assert _threshold(org) == (1000, 10)
    # A subscription's allowance counts too; a promotion does not.
    services.credits_grant(
        organization=org,
        amount=500,
        source="subscription_allowance",
        idempotency_key="allowance-1",
        expires_at=timezone.now() + timedelta(days=30),
    )
    assert _threshold(org) == (50, 10)
    services.credits_grant(organization=org, amount=9000, source="promotion", idempotency_key="promo-1")
    assert _threshold(org) == (50, 10)


def test_it_alerts_once_at_ten_percent_remaining(org, owner, fund, django_capture_on_commit_callbacks):
    _settings(org, owner, low_balance_percent=10)
    assert _threshold(org) == (0, 10)  # nothing bought yet: nothing to count from
    fund(1000)
    assert _threshold(org) == (100, 10)
    with django_capture_on_commit_callbacks(execute=True):
        services.credits_consume(organization=org, amount=850, idempotency_key="a")  # 150 left
        assert not mail.outbox
        services.credits_consume(organization=org, amount=60, idempotency_key="b")  # 90 left
    assert len(mail.outbox) == 1
    assert "threshold of 100 (10% of the last purchase or allowance)" in mail.outbox[0].body


def test_a_fixed_number_replaces_the_percentage(org, owner, fund):
    fund(2000)
    _settings(org, owner, low_balance_percent=10)
    _settings(org, owner, low_balance_threshold=300)
    assert _threshold(org) == (300, 0)
    fund(5000)
    assert _threshold(org) == (300, 0)  # a fixed number does not follow purchases


@pytest.mark.parametrize("percent", [101, -1])
def test_the_service_refuses_a_percentage_out_of_range(org, owner, percent):
    before = _threshold(org) if CreditAccount.objects.filter(organization=org).exists() else None
    with pytest.raises(ServiceError) as refused:
        _settings(org, owner, low_balance_percent=percent)
    assert refused.value.field == "low_balance_threshold"
    assert before is None or _threshold(org) == before


def test_the_form_takes_a_percentage_and_refuses_more_than_a_hundred(client_for, org, owner, fund):
    fund(4000)
    client = client_for(owner)
    url = reverse("credits_settings", args=[org.slug])
    data = {"auto_recharge_threshold": 0, "auto_recharge_monthly_limit": 0}
    response = client.post(url, {**data, "low_balance_threshold": 150, "low_balance_unit": "percent"})
    assert response.status_code == 400
    assert "A percentage is between 1 and 100" in response.content.decode()
    assert _threshold(org) == (100, 0)  # the default, unchanged

    response = client.post(url, {**data, "low_balance_threshold": 10, "low_balance_unit": "percent"})
    assert response.status_code == 302
    assert _threshold(org) == (400, 10)
    page = client.get(reverse("credits", args=[org.slug]))
    form = page.context["settings_form"]
    assert (form.initial["low_balance_threshold"], form.initial["low_balance_unit"]) == (10, "percent")

    response = client.post(url, {**data, "low_balance_threshold": 250, "low_balance_unit": "credits"})
    assert response.status_code == 302
    assert _threshold(org) == (250, 0)


def test_a_member_reads_the_percentage(client_for, org, owner, member, fund):
    fund(3000)
    _settings(org, owner, low_balance_percent=10)
    body = client_for(member).get(reverse("credits", args=[org.slug])).content.decode()
    assert "Alert at 300 credits (10% of the last purchase or allowance)." in body
