"""Redis away: pages, entitlement checks, usage ingestion and consumption answer from PostgreSQL.

The cache is pointed at a loopback port nothing listens on and the real views and API are driven;
every cache failure is counted, and the rate limiter follows RATE_LIMIT_FAIL_OPEN.
"""

import pytest
from django.core.cache import cache
from django.urls import reverse

from billing import entitlements
from billing.models import Plan
from credits import services as credit_services
from credits.models import CreditAccount
from teams import api_keys, metrics

pytestmark = pytest.mark.django_db

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def _dead_cache(retry_seconds: int = 0) -> dict:
    return {
        "default": {
            "BACKEND": "teams.cache.ResilientRedisCache",
            "LOCATION": DEAD_REDIS,
            "KEY_PREFIX": "tally",
            "OPTIONS": {"RETRY_SECONDS": retry_seconds},
        }
    }


@pytest.fixture
def redis_away(settings):
    settings.CACHES = _dead_cache()
    settings.RATE_LIMIT_REDIS_URL = DEAD_REDIS
    yield


@pytest.fixture
def key_client(api_client, org, owner):
    _, secret = api_keys.api_key_create(organization=org, actor=owner, name="server")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return api_client


def _errors() -> int:
    return sum(v for (name, _), v in metrics.snapshot().items() if name == "tally_cache_errors_total")


def test_entitlement_checks_answer_from_the_database(redis_away, key_client, org):
    before = _errors()
    response = key_client.post(
        "/api/v1/entitlements/check", {"feature": "projects", "requested": 1}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["allowed"] is True
    assert key_client.get("/api/v1/entitlements").status_code == 200
    assert _errors() > before  # each failure counted, none turned into an error


def test_usage_is_ingested_and_counted_once(redis_away, key_client, org):
    body = {"events": [{"id": "a", "meter": "api_calls"}, {"id": "b", "meter": "api_calls"}]}
    first = key_client.post("/api/v1/usage/events", body, format="json")
    assert first.status_code == 200, first.content
    assert first.json()["accepted"] == 2
    again = key_client.post("/api/v1/usage/events", body, format="json").json()
    assert again["duplicates"] == 2
    # No cache to read from: the count comes from the counter table.
    assert entitlements.check(org, "api_calls", 0).used == 2


def test_consumption_keeps_the_ledger(redis_away, key_client, org, settings):
    settings.CREDITS_WELCOME_BONUS = 0
    credit_services.credits_grant(organization=org, amount=50, source="purchase", idempotency_key="fund-1")
    response = key_client.post(
        "/api/v1/credits/consume", {"amount": 20}, format="json", HTTP_IDEMPOTENCY_KEY="job-1"
    )
    assert response.status_code == 201, response.content
    replay = key_client.post(
        "/api/v1/credits/consume", {"amount": 20}, format="json", HTTP_IDEMPOTENCY_KEY="job-1"
    )
    assert replay.status_code in (200, 201) and replay.json()["id"] == response.json()["id"]
    assert CreditAccount.objects.get(organization=org).balance == 30
    assert key_client.get("/api/v1/credits/balance").json()["balance"] == 30


@pytest.mark.parametrize("page", ["billing", "credits", "usage"])
def test_the_pages_render(redis_away, client_for, org, owner, page):
    response = client_for(owner).get(reverse(page, args=[org.slug]))
    assert response.status_code == 200


def test_a_plan_change_made_while_away_is_seen_at_once(redis_away, org):
    assert entitlements.check(org, "projects", 4).allowed is False  # Free: three projects
    entitlements.subscription_set(organization=org, plan=Plan.objects.get(key="pro_monthly"), status="active")
    entitlements.invalidate(org)  # dropped: there is no cache to forget
    assert entitlements.check(org, "projects", 4).allowed is True


@pytest.mark.parametrize("fail_open", [True, False])
def test_the_rate_limiter_fails_as_configured(redis_away, key_client, settings, fail_open):
    settings.RATE_LIMIT_FAIL_OPEN = fail_open
    response = key_client.get("/api/v1/credits/balance")
    if fail_open:
        assert response.status_code == 200
    else:
        assert response.status_code == 503
        assert response.json()["code"] == "rate_limit_unavailable"


def test_a_cache_away_is_left_alone_then_tried_again(settings):
    settings.CACHES = _dead_cache(retry_seconds=3600)
    before_skipped = metrics.value("tally_cache_skipped_total", operation="get")
    before_errors = metrics.value("tally_cache_errors_total", operation="get")
    assert cache.get("k", "fallback") == "fallback"
    assert cache.get_many(["a", "b"]) == {}
    assert cache.add("lock", 1) is True  # the work it guards is idempotent: doing it is the safe failure
    assert metrics.value("tally_cache_errors_total", operation="get") == before_errors + 1
    assert metrics.value("tally_cache_skipped_total", operation="get") == before_skipped  # get was first
    cache.get("k")
    assert metrics.value("tally_cache_skipped_total", operation="get") == before_skipped + 1


def test_the_catalog_is_invalidated_when_the_cache_answers_again(settings, redis_proxy):
    """A write dropped while Redis was away (an invalidation) must not leave a stale entry served:
    the first answer after the outage bumps the catalog version, which every entry is checked by."""
    settings.CACHES = {
        "default": {
            "BACKEND": "teams.cache.ResilientRedisCache",
            "LOCATION": redis_proxy.url("redis", f"/{_db(settings)}"),
            "KEY_PREFIX": "tally",
            "OPTIONS": {"RETRY_SECONDS": 0},
        }
    }
    before = entitlements.catalog_version()
    redis_proxy.down()
    entitlements.invalidate_catalog()  # dropped
    redis_proxy.restore()
    assert cache.get("anything") is None  # the first answer after the outage
    assert entitlements.catalog_version() != before


def _db(settings) -> str:
    return settings.REDIS_URL.rsplit("/", 1)[-1]
