import re
from urllib.parse import unquote

import pytest
from django.urls import reverse

from credits import services
from credits.models import CreditAccount
from teams.models import AuditEvent
from tests.factories import CreditPackageFactory

pytestmark = pytest.mark.django_db


def test_a_member_sees_balance_packages_usage_and_history(client_for, org, member, fund):
    CreditPackageFactory(
        code="pack-50", name="$50 pack", credits=50_000, bonus_credits=5_000, unit_amount=5000
    )
    fund(1000)
    services.credits_consume(organization=org, action="image", idempotency_key="a")
    response = client_for(member).get(reverse("credits", args=[org.slug]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "950" in body and "$50 pack" in body and "55,000" in body and "$50" in body
    assert "Image generation" in body  # the history line
    assert "image" in body  # the usage-by-action bar
    assert "Billing managers and owners change these" in body  # a member cannot edit settings


def test_the_page_runs_a_fixed_number_of_queries(
    client_for, org, member, fund, django_assert_max_num_queries
):
    fund(1000)
    for i in range(30):
        services.credits_consume(organization=org, amount=1, idempotency_key=f"c{i}")
    client = client_for(member)
    with django_assert_max_num_queries(16):  # cold: 13 warm (tests/test_page_queries.py), the caches it fills
        assert client.get(reverse("credits", args=[org.slug])).status_code == 200


def test_history_filters_and_pages_with_htmx(client_for, org, member, fund):
    fund(100)
    for i in range(30):
        services.credits_consume(organization=org, amount=1, idempotency_key=f"c{i}", reference_id=f"job-{i}")
    client = client_for(member)
    url = reverse("credits", args=[org.slug])
    first = client.get(url, {"type": "consumption"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="history")
    body = first.content.decode()
    assert "<html" not in body and "job-29" in body and "job-4" not in body and "Older" in body
    cursor = unquote(re.search(r"cursor=([\w%:-]+)", body).group(1))
    older = client.get(url, {"type": "consumption", "cursor": cursor}).content.decode()
    assert "job-4" in older and "job-29" not in older
    only = client.get(url, {"reference": "job-7"}).context["transactions"]
    assert [t.reference_id for t in only] == ["job-7"]


def test_it_exports_the_history_as_csv(client_for, org, member, fund):
    fund(100)
    services.credits_consume(organization=org, amount=3, idempotency_key="a", description="=HYPERLINK(1)")
    response = client_for(member).get(reverse("credits_export", args=[org.slug]), {"type": "consumption"})
    assert response["Content-Type"] == "text/csv"
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0].startswith("date,type,amount,balance_after")
    assert len(lines) == 2
    assert ",consumption,-3,97," in lines[1]
    assert "'=HYPERLINK(1)" in lines[1]  # a formula is written as text


def test_only_billing_managers_change_the_settings(client_for, org, member, billing_manager):
    url = reverse("credits_settings", args=[org.slug])
    data = {"low_balance_threshold": 250, "auto_recharge_threshold": 0, "auto_recharge_monthly_limit": 0}
    assert client_for(member).post(url, data).status_code == 403
    response = client_for(billing_manager).post(url, data)
    assert response.status_code == 302
    assert CreditAccount.objects.get(organization=org).low_balance_threshold == 250
    assert AuditEvent.objects.filter(action="credits.settings_changed").exists()


def test_bad_settings_are_explained_and_change_nothing(client_for, org, owner):
    package = CreditPackageFactory(unit_amount=5000)
    response = client_for(owner).post(
        reverse("credits_settings", args=[org.slug]),
        {
            "low_balance_threshold": 100,
            "auto_recharge_enabled": "on",
            "auto_recharge_threshold": 50,
            "auto_recharge_package": package.pk,
            "auto_recharge_monthly_limit": 10,
        },
    )
    assert response.status_code == 400
    assert "at least one recharge" in response.content.decode()
    assert not CreditAccount.objects.get(organization=org).auto_recharge_enabled


def test_the_nav_widget_shows_the_balance_and_the_low_banner(client_for, org, member, fund):
    fund(50)
    client = client_for(member)
    assert b'id="credit-balance"' in client.get(reverse("dashboard", args=[org.slug])).content
    widget = client.get(reverse("credits_widget", args=[org.slug])).content.decode()
    assert ">50<" in widget
    assert 'hx-swap-oob="true"' in widget and "running low" in widget
    fund(500)
    assert "running low" not in client.get(reverse("credits_widget", args=[org.slug])).content.decode()


def _limit_settings(package, limit):
    return {
        "low_balance_threshold": 0,
        "auto_recharge_threshold": 0,
        "auto_recharge_package": package.pk,
        "auto_recharge_monthly_limit": limit,
    }


def test_it_counts_the_monthly_limit_in_the_package_s_own_currency(client_for, org, owner):
    yen = CreditPackageFactory(code="yen-pack", currency="jpy", unit_amount=1500)
    client = client_for(owner)
    url = reverse("credits_settings", args=[org.slug])
    assert client.post(url, _limit_settings(yen, "5000")).status_code == 302
    # The yen has no minor unit: 5,000 typed is 5,000 stored, not 500,000.
    assert CreditAccount.objects.get(organization=org).auto_recharge_monthly_limit == 5000
    form = client.get(reverse("credits", args=[org.slug])).context["settings_form"]
    assert form.initial["auto_recharge_monthly_limit"] == 5000

    dollars = CreditPackageFactory(code="usd-pack", currency="usd", unit_amount=1000)
    assert client.post(url, _limit_settings(dollars, "10.50")).status_code == 302
    assert CreditAccount.objects.get(organization=org).auto_recharge_monthly_limit == 1050
    form = client.get(reverse("credits", args=[org.slug])).context["settings_form"]
    assert str(form.initial["auto_recharge_monthly_limit"]) == "10.50"


def test_it_refuses_a_fraction_of_a_yen_and_changes_nothing(client_for, org, owner):
    yen = CreditPackageFactory(code="yen-pack", currency="jpy", unit_amount=1500)
    before = services.credit_account_for(organization=org).auto_recharge_monthly_limit
    response = client_for(owner).post(
        reverse("credits_settings", args=[org.slug]), _limit_settings(yen, "10.5")
    )
    assert response.status_code == 400
    assert "JPY amounts have no decimal places." in response.content.decode()
    assert CreditAccount.objects.get(organization=org).auto_recharge_monthly_limit == before
