"""Races against a real PostgreSQL: the quota holds whatever the interleaving."""

import pytest

from billing import entitlements
from billing.models import UsageCounter, UsageEvent
from tests.factories import OrganizationFactory
from tests.races import race


@pytest.mark.django_db(transaction=True)
def test_concurrent_consumers_never_pass_the_limit():
    org = OrganizationFactory()
    # Free plan: 1,000 API calls a month. Leave exactly 100.
    assert entitlements.consume(org, "api_calls", 900, idempotency_key="setup").allowed

    def two_attempts(index):
        return [
            entitlements.consume(org, "api_calls", 5, idempotency_key=f"t{index}-{n}").allowed
            for n in range(2)
        ]

    results = race(20, two_attempts)
    assert not [r for r in results if isinstance(r, Exception)], results
    outcomes = [ok for pair in results for ok in pair]
    assert len(outcomes) == 40
    assert outcomes.count(True) == 20
    counter = UsageCounter.objects.get(organization=org, feature__key="api_calls")
    assert counter.used == 1000
    assert UsageEvent.objects.filter(organization=org).count() == 1 + 20


@pytest.mark.django_db(transaction=True)
def test_concurrent_replays_of_one_key_count_once():
    org = OrganizationFactory()
    results = race(10, lambda i: entitlements.consume(org, "api_calls", 7, idempotency_key="k"))
    assert all(not isinstance(r, Exception) and r.allowed for r in results), results
    assert UsageCounter.objects.get(organization=org, feature__key="api_calls").used == 7
