"""Plan-based API rate limits, counted in Redis so every process shares them."""

import threading
from datetime import UTC, datetime

import pytest
from django.db import connection

from billing import entitlements, ratelimit, services
from billing.models import Plan, UsageCounter
from teams import services as team_services
from tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db

# Mid-minute, so that a test's requests all fall in one window.
AT = datetime(2026, 11, 21, 12, 0, 15, tzinfo=UTC)


@pytest.fixture
def key_client(api_client, org, owner):
    _, secret = team_services.api_key_create(organization=org, actor=owner, name="server")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return api_client


def test_it_allows_the_plans_rate_then_refuses(org):
    decisions = [ratelimit.rate_hit(organization=org, now=AT) for _ in range(61)]
    assert [d.allowed for d in decisions] == [True] * 60 + [False]
    assert (decisions[-1].limit, decisions[-1].retry_after) == (60, 45)


def test_a_new_minute_starts_afresh(org):
    for _ in range(61):
        ratelimit.rate_hit(organization=org, now=AT)
    assert ratelimit.rate_hit(organization=org, now=AT.replace(minute=1)).allowed


def test_the_rate_follows_the_plan(org):
    services.subscription_set(organization=org, plan=Plan.objects.get(key="pro_monthly"), status="active")
    entitlements.invalidate(org)
    decisions = [ratelimit.rate_hit(organization=org, now=AT) for _ in range(601)]
    assert decisions[599].allowed and not decisions[600].allowed
    assert decisions[600].limit == 600


class _FrozenClock:
    @staticmethod
    def now():
        return AT


def test_the_api_answers_429_with_retry_after(key_client, org, monkeypatch):
    monkeypatch.setattr(ratelimit, "timezone", _FrozenClock)
    for _ in range(60):
        assert key_client.get("/api/v1/projects/").status_code == 200
    response = key_client.get("/api/v1/projects/")
    assert response.status_code == 429
    assert response.json()["code"] == "rate_limited"
    assert response["Retry-After"] == "45"
    # A refused call is not an API call: the quota counts the 60 that ran.
    assert UsageCounter.objects.get(organization=org, feature__key="api_calls").used == 60


def test_entitlements_show_the_requests_this_minute(key_client, org, monkeypatch):
    monkeypatch.setattr(ratelimit, "timezone", _FrozenClock)
    key_client.get("/api/v1/projects/")
    decision = entitlements.check(org, "api_rate", 0)
    assert (decision.limit, decision.used) == (60, 1)


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_never_pass_the_rate():
    org = OrganizationFactory()
    results, lock = [], threading.Lock()
    barrier = threading.Barrier(16)

    def run():
        try:
            barrier.wait()
            allowed = [ratelimit.rate_hit(organization=org, now=AT).allowed for _ in range(10)]
        finally:
            connection.close()
        with lock:
            results.extend(allowed)

    threads = [threading.Thread(target=run) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 160
    assert results.count(True) == 60
