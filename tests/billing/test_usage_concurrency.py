"""Races against a real PostgreSQL: a retried batch counts once, a quota holds."""

import pytest

from billing import entitlements, metering
from billing.models import UsageCounter, UsageEvent
from tests.billing.test_usage_days import assert_days_match
from tests.factories import OrganizationFactory
from tests.races import race


def used(org, feature):
    return UsageCounter.objects.get(organization=org, feature__key=feature).used


@pytest.mark.django_db(transaction=True)
def test_it_counts_each_event_once_when_a_batch_is_retried_concurrently():
    org = OrganizationFactory()
    batch = [{"id": f"e{i}", "meter": "ai_generations", "value": 1} for i in range(8)]
    batch += [{"id": f"c{i}", "meter": "api_calls"} for i in range(100)]
    results = race(10, lambda i: metering.usage_ingest(organization=org, events=batch))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(r.accepted for r in results) == 108
    assert sum(r.duplicates for r in results) == 9 * 108
    assert used(org, "api_calls") == 100
    assert used(org, "ai_generations") == 8
    # And sequentially, afterwards: all duplicates, nothing moves.
    again = metering.usage_ingest(organization=org, events=batch)
    assert again.duplicates == 108
    assert used(org, "api_calls") == 100
    assert UsageEvent.objects.filter(organization=org).count() == 108
    assert_days_match(org)


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_never_pass_the_quota():
    org = OrganizationFactory()
    # Free plan: 1,000 API calls a month. Leave exactly 55.
    assert entitlements.consume(org, "api_calls", 945, idempotency_key="setup").allowed

    def batch(index):
        events = [{"id": f"t{index}-{n}", "meter": "api_calls"} for n in range(10)]
        return metering.usage_ingest(organization=org, events=events)

    results = race(12, batch)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(r.accepted for r in results) == 55
    assert sum(r.rejected for r in results) == 120 - 55
    assert used(org, "api_calls") == 1000
    assert UsageEvent.objects.filter(organization=org, source="ingest").count() == 55
    assert_days_match(org)


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_count_a_distinct_value_once():
    org = OrganizationFactory()

    def batch(index):
        events = [
            {"id": f"u{index}-{n}", "meter": "active_users", "properties": {"user_id": f"user{n}"}}
            for n in range(5)
        ]
        return metering.usage_ingest(organization=org, events=events)

    results = race(8, batch)
    assert not [r for r in results if isinstance(r, Exception)], results
    _, totals = metering.meter_totals(organization=org)
    assert {t.meter.key: t.total for t in totals}["active_users"] == 5
    assert_days_match(org)
