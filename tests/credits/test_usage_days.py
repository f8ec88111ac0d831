"""The daily rollup of consumption is the ledger, added up: on every path that writes one."""

import pytest
from django.db.models import Count, Sum

from common.errors import ServiceError
from credits import selectors, services
from credits.models import CreditTransaction, CreditUsageDay


def _from_ledger(account_id):
    rows = (
        CreditTransaction.objects.filter(account_id=account_id, type="consumption")
        .values_list("action")
        .annotate(s=Sum("amount"), n=Count("id"))
    )
    return {action: (-s, n) for action, s, n in rows}


def _rollup(account_id):
    return {
        r.action: (r.credits, r.consumptions) for r in CreditUsageDay.objects.filter(account_id=account_id)
    }


def _consume_every_way(org, fund):
    fund(1000)
    services.credits_consume(organization=org, amount=5, idempotency_key="a")
    services.credits_consume(organization=org, amount=7, idempotency_key="b")
    services.credits_consume(organization=org, amount=7, idempotency_key="b")  # a replay: once
    services.credits_consume(organization=org, action="image", idempotency_key="c")
    held = services.credit_reservation_create(organization=org, amount=30, idempotency_key="r")
    services.credit_reservation_confirm(reservation=held, amount=20)
    with pytest.raises(ServiceError):
        services.credits_consume(organization=org, amount=10**6, idempotency_key="too-much")
    return services.credit_account_for(organization=org)


@pytest.mark.django_db
def test_it_matches_the_ledger_inside_a_transaction(org, fund):
    account = _consume_every_way(org, fund)
    assert _rollup(account.pk) == _from_ledger(account.pk)
    assert sum(c for c, _ in _rollup(account.pk).values()) == 5 + 7 + 20 + 50  # an image is 50


@pytest.mark.django_db(transaction=True)
def test_it_matches_the_ledger_on_the_one_round_trip_path(org, fund):
    account = _consume_every_way(org, fund)
    assert _rollup(account.pk) == _from_ledger(account.pk)


@pytest.mark.django_db
def test_the_pages_figures_come_from_it(org, fund):
    account = _consume_every_way(org, fund)
    by_action = {bar.label: bar.value for bar in selectors.usage_by_action(account)}
    assert by_action == {label or "other": c for label, (c, _) in _from_ledger(account.pk).items()}
    days = selectors.usage_by_day(account)
    assert len(days) == 30 and days[-1].value == sum(by_action.values())
    assert all(bar.value == 0 for bar in days[:-1])


@pytest.mark.django_db
def test_the_page_reads_them_in_one_query_with_the_same_figures(org, fund, django_assert_num_queries):
    account = _consume_every_way(org, fund)
    account.refresh_from_db()
    with django_assert_num_queries(1):
        overview = selectors.usage_overview(account)
    assert overview.runway == selectors.runway_days(account)
    assert overview.by_day == selectors.usage_by_day(account)
    assert overview.by_action == selectors.usage_by_action(account)
