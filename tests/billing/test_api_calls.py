"""API calls are counted in Redis and written in batches: exactly the requests made, across
flushes, interrupted flushes and restarts, and refused past the quota as before."""

import pytest
from django.core.management import call_command

from billing import entitlements, metering
from billing.metering import api_calls
from billing.models import UsageCounter, UsageEvent
from teams import api_keys

pytestmark = pytest.mark.django_db


@pytest.fixture
def key_client(api_client, org, owner):
    _, secret = api_keys.api_key_create(organization=org, actor=owner, name="server")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return api_client


def _written(org) -> int:
    return UsageEvent.objects.filter(organization=org, meter__key="api_calls").count()


def _counter(org) -> int:
    return sum(
        UsageCounter.objects.filter(organization=org, feature__key="api_calls").values_list("used", flat=True)
    )


def _calls(client, n, **headers):
    for _ in range(n):
        assert client.get("/api/v1/projects/", **headers).status_code == 200


def test_a_call_writes_nothing_until_the_flush(key_client, org, django_assert_max_num_queries):
    _calls(key_client, 1)
    with django_assert_max_num_queries(1):  # the view's own list of projects, nothing more
        _calls(key_client, 1)
    assert _written(org) == 0
    assert api_calls.api_calls_flush() == 2
    assert _written(org) == 2 and _counter(org) == 2


def test_counted_calls_equal_requests_across_a_flush_and_a_restart(key_client, org):
    _calls(key_client, 7)
    assert api_calls.api_calls_flush() == 7
    _calls(key_client, 5)
    # A flush takes the five and dies before writing them (the worker restarts) ...
    client = api_calls._client()
    taken, batch = client.eval(api_calls._TAKE, 3, *api_calls._keys(org.pk), org.pk, "interrupted")
    assert taken == 5
    _calls(key_client, 3)  # ... while calls go on
    # ... and another dies after writing them, before letting the batch go.
    api_calls._ingest(org, 5, batch.decode(), None)
    api_calls._clients.clear()  # the new worker: nothing of the old one's state
    call_command("api_calls_flush")
    assert api_calls.api_calls_flush() == 0  # nothing left, nothing twice
    assert _written(org) == 7 + 5 + 3
    assert _counter(org) == 7 + 5 + 3


def test_a_retried_request_is_counted_once(key_client, org):
    _calls(key_client, 3, HTTP_IDEMPOTENCY_KEY="same")
    _calls(key_client, 1, HTTP_IDEMPOTENCY_KEY="other")
    api_calls.api_calls_flush()
    assert _written(org) == 2


def test_calls_past_the_quota_are_refused_counting_what_waits(
    key_client, org, django_capture_on_commit_callbacks
):
    # The free plan's quota: counted calls still in Redis count against it too.
    limit = entitlements.check(org, "api_calls", 0).limit
    with django_capture_on_commit_callbacks(execute=True):
        metering.usage_ingest(
            organization=org,
            events=[{"id": f"old-{i}", "meter": "api_calls", "value": 1} for i in range(limit - 2)],
        )
    _calls(key_client, 2)
    response = key_client.get("/api/v1/projects/")
    assert response.status_code == 402
    assert response.json()["code"] == "quota_exceeded"
    assert api_calls.api_calls_flush() == 2
    assert _counter(org) == limit
