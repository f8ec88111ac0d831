"""Plan-based API rate limits: a sliding window in Redis, per organization and per API key."""

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from django.db import connection
from django.urls import URLPattern, URLResolver, get_resolver

from billing import entitlements, metering
from billing.entitlements import counter_registry, ratelimit
from billing.models import Plan, UsageCounter
from teams import api_keys
from tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db

# Mid-minute, so that a test's requests all fall in one window.
AT = datetime(2026, 11, 21, 12, 0, 15, tzinfo=UTC)
DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def _key(org, owner, name="server", **kwargs):
    key, secret = api_keys.api_key_create(organization=org, actor=owner, name=name, **kwargs)
    return key, secret


@pytest.fixture
def key_client(api_client, org, owner):
    _, secret = _key(org, owner)
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return api_client


def _on_pro(org):
    entitlements.subscription_set(organization=org, plan=Plan.objects.get(key="pro_monthly"), status="active")
    entitlements.invalidate(org)


class _FrozenClock:
    @staticmethod
    def now():
        return AT


def test_it_allows_the_plans_rate_then_refuses(org):
    decisions = [ratelimit.rate_hit(organization=org, now=AT) for _ in range(60)]
    refused = ratelimit.rate_hit(organization=org, now=AT + timedelta(seconds=15))
    assert all(d.allowed for d in decisions) and not refused.allowed
    # The first of the 60 leaves the window 60 s after it came: 45 s from now.
    assert (refused.limit, refused.remaining, refused.retry_after) == (60, 0, 45)
    assert [d.remaining for d in decisions[:3]] == [59, 58, 57]


def test_the_window_slides_so_no_burst_fits_at_a_minutes_edge(org):
    edge = AT.replace(second=59)
    for _ in range(60):
        assert ratelimit.rate_hit(organization=org, now=edge).allowed
    # A fixed window would start afresh two seconds later, at 12:01:01.
    assert not ratelimit.rate_hit(organization=org, now=edge + timedelta(seconds=2)).allowed
    assert ratelimit.rate_hit(organization=org, now=edge + timedelta(seconds=60, milliseconds=1)).allowed


def test_a_refused_request_uses_up_nothing(org):
    for _ in range(60):
        ratelimit.rate_hit(organization=org, now=AT)
    for _ in range(100):
        assert not ratelimit.rate_hit(organization=org, now=AT + timedelta(seconds=30)).allowed
    assert ratelimit.rate_hit(organization=org, now=AT + timedelta(seconds=60, milliseconds=1)).allowed


def test_the_rate_follows_the_plan(org):
    _on_pro(org)
    decisions = [ratelimit.rate_hit(organization=org, now=AT) for _ in range(601)]
    assert decisions[599].allowed and not decisions[600].allowed
    assert decisions[600].limit == 600


def test_each_key_has_its_own_share_of_the_organizations_rate(org, owner):
    _on_pro(org)  # 600 a minute for the organization, 300 for any one key
    first, second, third = (_key(org, owner, name)[0] for name in ("a", "b", "c"))
    hit = lambda key: ratelimit.rate_hit(organization=org, caller=f"key:{key.pk}", now=AT)  # noqa: E731
    assert all(hit(first).allowed for _ in range(300))
    refused = hit(first)
    assert (refused.allowed, refused.limit, refused.bucket) == (False, 300, f"key:{first.pk}:org{org.pk}")
    # The second key is not held back by the first one's share...
    assert all(hit(second).allowed for _ in range(300))
    # ...but the organization's 600 are now used, whichever key asks.
    refused = hit(third)
    assert (refused.allowed, refused.limit, refused.bucket) == (False, 600, f"org:{org.pk}")


def test_organizations_are_limited_independently(org):
    other = OrganizationFactory()
    for _ in range(60):
        ratelimit.rate_hit(organization=org, now=AT)
    assert not ratelimit.rate_hit(organization=org, now=AT).allowed
    assert ratelimit.rate_hit(organization=other, now=AT).allowed


def test_an_unlimited_plan_is_not_limited(org):
    entitlements.subscription_set(organization=org, plan=Plan.objects.get(key="enterprise"), status="active")
    entitlements.invalidate(org)
    decision = ratelimit.rate_hit(organization=org, caller="key:1", now=AT)
    assert decision.allowed and decision.limit is None and decision.headers() == {}


def test_the_api_answers_429_with_retry_after_and_ratelimit_headers(key_client, org, monkeypatch):
    monkeypatch.setattr(ratelimit, "timezone", _FrozenClock)
    for n in range(60):
        response = key_client.get("/api/v1/projects/")
        assert response.status_code == 200
        assert (response["RateLimit-Limit"], response["RateLimit-Remaining"]) == ("60", str(59 - n))
        assert response["RateLimit-Reset"] == "60"
    response = key_client.get("/api/v1/projects/")
    assert response.status_code == 429
    body = response.json()
    assert body["code"] == "rate_limited"
    assert body["message"] == "Too many requests: your organization's plan allows 60 API requests a minute."
    assert response["Retry-After"] == "60"
    assert (response["RateLimit-Limit"], response["RateLimit-Remaining"]) == ("60", "0")
    assert response["RateLimit-Reset"] == "60"
    # A refused call is not an API call: the quota counts the 60 that ran (once written).
    metering.api_calls_flush()
    assert UsageCounter.objects.get(organization=org, feature__key="api_calls").used == 60


def test_the_api_refuses_one_key_past_its_share_and_not_another(api_client, org, owner):
    _on_pro(org)
    (first, first_secret), (_, second_secret) = _key(org, owner, "a"), _key(org, owner, "b")
    for _ in range(300):
        ratelimit.rate_hit(organization=org, caller=f"key:{first.pk}")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {first_secret}")
    response = api_client.get("/api/v1/credits/balance/")
    assert response.status_code == 429
    assert response.json()["message"] == (
        "Too many requests: each API key or person may make 300 API requests a minute."
    )
    assert response["RateLimit-Limit"] == "300"
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {second_secret}")
    response = api_client.get("/api/v1/credits/balance/")
    assert response.status_code == 200
    assert (response["RateLimit-Limit"], response["RateLimit-Remaining"]) == ("300", "299")


def test_a_session_is_limited_like_a_key(client_for, org, owner):
    client = client_for(owner)
    for _ in range(60):
        ratelimit.rate_hit(organization=org, caller=f"user:{owner.pk}")
    response = client.get("/api/v1/credits/balance/", HTTP_X_TALLY_ORG=org.slug)
    assert response.status_code == 429
    assert response["Retry-After"]


def _api_routes():
    """Every (path, methods) under /api/v1/ except the schema, with made-up UUIDs."""

    def walk(patterns, prefix=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                yield prefix + str(p.pattern), p.callback

    code = str(uuid.uuid4())
    for route, callback in walk(get_resolver().url_patterns):
        view = getattr(callback, "view_class", None)
        if not route.startswith("api/v1/") or view is None or route.startswith("api/v1/schema"):
            continue
        path = route.replace("<uuid:code>", code).replace("^", "").replace("/?$", "/").replace("$", "")
        path = path.replace("(?P<code>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})", code)
        methods = [m for m in ("get", "post", "patch", "put", "delete") if hasattr(view, m)]
        yield "/" + path, methods


def test_every_api_endpoint_is_rate_limited(key_client, org):
    routes = list(_api_routes())
    assert len(routes) >= 20
    for _ in range(60):
        ratelimit.rate_hit(organization=org)
    for path, methods in routes:
        for method in methods:
            response = getattr(key_client, method)(path, {}, format="json")
            assert response.status_code == 429, (method, path, response.content)
            assert response["RateLimit-Remaining"] == "0" and response["Retry-After"]


@pytest.mark.parametrize("fail_open", [True, False])
def test_without_redis_the_setting_decides(key_client, settings, fail_open):
    settings.RATE_LIMIT_REDIS_URL = DEAD_REDIS
    settings.RATE_LIMIT_FAIL_OPEN = fail_open
    response = key_client.get("/api/v1/credits/balance/")
    if fail_open:
        assert response.status_code == 200
        assert "RateLimit-Limit" not in response
    else:
        assert response.status_code == 503
        assert response.json()["code"] == "rate_limit_unavailable"
        assert response["Retry-After"] == "1"


def test_entitlements_show_the_requests_this_minute(key_client, org):
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


def test_the_public_schema_is_limited_per_address(client, settings):
    settings.API_ANONYMOUS_RATE = 2
    for _ in range(2):
        response = client.get("/api/v1/schema/", REMOTE_ADDR="203.0.113.5")
        assert response.status_code == 200
    response = client.get("/api/v1/schema/", REMOTE_ADDR="203.0.113.5")
    assert response.status_code == 429
    # Rendered in the schema's own format (YAML unless JSON is asked for).
    assert yaml.safe_load(response.content)["message"] == (
        "Too many requests: an address without an API key may make 2 API requests a minute."
    )
    assert response["RateLimit-Limit"] == "2" and response["Retry-After"]
    assert client.get("/api/v1/schema/", REMOTE_ADDR="198.51.100.4").status_code == 200


def test_an_anonymous_call_to_a_private_endpoint_is_answered_401_not_counted(api_client):
    for _ in range(40):
        assert api_client.get("/api/v1/credits/balance/").status_code == 401


def test_a_plan_change_in_this_process_reaches_the_limiter_at_once(org):
    assert ratelimit.api_buckets(organization=org, caller=None, now=AT)[0].limit == 60
    _on_pro(org)  # subscription_set and invalidate forget what this process kept
    pro = ratelimit.api_buckets(organization=org, caller=None, now=AT)
    assert pro[0].limit != 60


def test_a_plan_change_made_elsewhere_reaches_the_limiter_within_its_ttl(org, monkeypatch):
    monkeypatch.setattr(ratelimit, "LIMITS_TTL", 0.3)
    assert ratelimit.api_buckets(organization=org, caller=None, now=AT)[0].limit == 60
    # Another process changed the plan: its invalidation moved the shared cache only.
    kept = list(counter_registry.FORGET)
    counter_registry.FORGET.clear()
    try:
        _on_pro(org)
    finally:
        counter_registry.FORGET[:] = kept
    assert ratelimit.api_buckets(organization=org, caller=None, now=AT)[0].limit == 60
    time.sleep(0.35)
    assert ratelimit.api_buckets(organization=org, caller=None, now=AT)[0].limit != 60


def test_the_kept_limits_are_not_read_past_the_entitlements_own_end(org):
    # A grant or a trial that ends stops counting at its end, even inside the TTL.
    ratelimit.api_buckets(organization=org, caller=None, now=AT)
    expires = ratelimit._limits[org.pk][0]
    ratelimit._limits[org.pk] = (expires, AT, 1, 1)
    assert ratelimit.api_buckets(organization=org, caller=None, now=AT)[0].limit == 60
