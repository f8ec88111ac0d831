"""The hot API paths: what one request costs, and that the shortcuts never serve stale data."""

import pytest

from billing import entitlements
from billing.entitlements import engine
from billing.models import Plan
from teams import api_keys

pytestmark = pytest.mark.django_db


@pytest.fixture
def key_client(api_client, org, owner):
    _, secret = api_keys.api_key_create(organization=org, actor=owner, name="server")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return api_client


def test_a_warm_entitlement_check_makes_no_query(key_client, django_assert_num_queries):
    key_client.post("/api/v1/entitlements/check", {"feature": "api_calls"}, format="json")
    with django_assert_num_queries(0):
        response = key_client.post("/api/v1/entitlements/check", {"feature": "api_calls"}, format="json")
    assert response.status_code == 200
    assert response.json()["allowed"] is True


def test_a_warm_consume_makes_only_the_debit(key_client, org, django_assert_max_num_queries):
    from credits import services as credit_services

    credit_services.credits_grant(organization=org, amount=10, source="purchase", idempotency_key="g")
    first = key_client.post("/api/v1/credits/consume", {"amount": 1}, format="json", HTTP_IDEMPOTENCY_KEY="a")
    # One round trip in production; inside the test's transaction the debit takes its
    # transactional path: a savepoint, the account, the grants and ledger, the release.
    with django_assert_max_num_queries(4):
        response = key_client.post(
            "/api/v1/credits/consume", {"amount": 1}, format="json", HTTP_IDEMPOTENCY_KEY="b"
        )
    assert response.status_code == 201, response.content
    assert response.json()["balance_after"] == first.json()["balance_after"] - 1


def test_what_the_rate_limiter_read_is_dropped_when_the_plan_changes(org, django_capture_on_commit_callbacks):
    assert not entitlements.check(org, "priority_support").allowed
    entitlements.effective_for(org, remember=True)
    with django_capture_on_commit_callbacks(execute=True):
        entitlements.subscription_set(
            organization=org, plan=Plan.objects.get(key="pro_monthly"), status="active"
        )
    assert entitlements.check(org, "priority_support").allowed


def test_what_the_rate_limiter_read_serves_only_its_own_request(
    org, monkeypatch, django_capture_on_commit_callbacks
):
    entitlements.effective_for(org, remember=True)
    monkeypatch.setattr(engine, "REQUEST_MEMO_SECONDS", 0.0)
    # Changed behind this instance's back (another process): the memo has expired, so it is seen.
    with django_capture_on_commit_callbacks(execute=True):
        entitlements.subscription_set(
            organization=type(org).objects.get(pk=org.pk),
            plan=Plan.objects.get(key="pro_monthly"),
            status="active",
        )
    assert entitlements.check(org, "priority_support").allowed


@pytest.fixture
def redis_trips(monkeypatch):
    """Counts the messages sent to Redis (a pipeline is one): the round trips a request makes."""
    import redis.connection

    sent = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counted(self, command, check_health=True):
        sent.append(command)
        return original(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
    return sent


def _check(client, feature):
    return client.post("/api/v1/entitlements/check", {"feature": feature}, format="json")


def _trips(client, feature, sent) -> int:
    for _ in range(2):
        _check(client, feature)
    sent.clear()
    assert _check(client, feature).status_code == 200
    return len(sent)


@pytest.mark.parametrize("feature, saved", [("priority_support", 1), ("api_calls", 0)])
def test_a_check_reads_its_entitlements_in_the_keys_round_trip(
    key_client, redis_trips, monkeypatch, feature, saved
):
    # On/off: nothing but the key's generation and the entitlements, in one message. Metered:
    # the usage is read after, as before.
    from billing.api import EntitlementCheckApi

    prefetched = _trips(key_client, feature, redis_trips)
    monkeypatch.setattr(EntitlementCheckApi, "prefetch_keys", None)
    assert prefetched == _trips(key_client, feature, redis_trips) - saved


@pytest.mark.parametrize("feature", ["priority_support", "api_calls", "projects", "ai_generations"])
def test_a_check_with_its_reads_prefetched_answers_as_the_engine_does(key_client, org, feature):
    for _ in range(2):
        answered = _check(key_client, feature).json()
    decision = entitlements.check(type(org).objects.get(pk=org.pk), feature, 1)
    assert (answered["allowed"], answered["reason"], answered["limit"], answered["used"]) == (
        decision.allowed,
        decision.reason,
        decision.limit,
        decision.used,
    )


def test_a_prefetched_check_sees_a_plan_change_on_the_very_next_request(
    key_client, org, django_capture_on_commit_callbacks
):
    for _ in range(2):
        assert _check(key_client, "priority_support").json()["allowed"] is False
    with django_capture_on_commit_callbacks(execute=True):
        entitlements.subscription_set(
            organization=type(org).objects.get(pk=org.pk),
            plan=Plan.objects.get(key="pro_monthly"),
            status="active",
        )
    assert _check(key_client, "priority_support").json()["allowed"] is True


def _ingest(client, *events):
    return client.post("/api/v1/usage/events", {"events": list(events)}, format="json")


def test_ingestion_reads_the_plan_in_the_keys_round_trip(key_client, redis_trips, monkeypatch):
    from billing.metering.api import UsageEventsApi

    def trips(prefix):
        for n in range(2):
            _ingest(key_client, {"id": f"{prefix}-warm-{n}", "meter": "peak_connections", "value": 3})
        redis_trips.clear()
        assert _ingest(key_client, {"id": f"{prefix}-x", "meter": "peak_connections"}).json()["accepted"] == 1
        return len(redis_trips)

    prefetched = trips("a")
    monkeypatch.setattr(UsageEventsApi, "prefetch_keys", None)
    assert prefetched == trips("b") - 1


def test_a_prefetched_ingestion_sees_a_plan_change_on_the_very_next_request(
    key_client, org, django_capture_on_commit_callbacks
):
    # The free plan's ten AI generations are used up; the next plan has a hundred.
    assert _ingest(key_client, {"id": "g0", "meter": "ai_generations", "value": 10}).json()["accepted"] == 1
    assert _ingest(key_client, {"id": "g1", "meter": "ai_generations"}).json()["rejected"] == 1
    with django_capture_on_commit_callbacks(execute=True):
        entitlements.subscription_set(
            organization=type(org).objects.get(pk=org.pk),
            plan=Plan.objects.get(key="pro_monthly"),
            status="active",
        )
    assert _ingest(key_client, {"id": "g2", "meter": "ai_generations"}).json()["accepted"] == 1


def test_a_consume_whose_rate_limits_expired_reads_the_plan_in_the_keys_round_trip(
    key_client, org, redis_trips, monkeypatch
):
    # With many organizations, each process's limits of one expire between its requests: the
    # plan was then read in a round trip of its own.
    from billing.entitlements import ratelimit
    from credits import services as credit_services
    from credits.api import ConsumeApi

    credit_services.credits_grant(organization=org, amount=10, source="purchase", idempotency_key="g")

    def trips(key):
        key_client.post(
            "/api/v1/credits/consume", {"amount": 1}, format="json", HTTP_IDEMPOTENCY_KEY=f"w{key}"
        )
        ratelimit.forget_limits()
        redis_trips.clear()
        response = key_client.post(
            "/api/v1/credits/consume", {"amount": 1}, format="json", HTTP_IDEMPOTENCY_KEY=key
        )
        assert response.status_code == 201, response.content
        return len(redis_trips)

    prefetched = trips("a")
    monkeypatch.setattr(ConsumeApi, "prefetch_keys", None)
    assert prefetched == trips("b") - 1
    # While the limits are fresh, nothing more is read with the key.
    assert ratelimit.prefetch_keys(org.pk) == []
    ratelimit.forget_limits(org.pk)
    assert ratelimit.prefetch_keys(org.pk) == entitlements.prefetch_keys(org.pk) != []
