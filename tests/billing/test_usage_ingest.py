"""Batch ingestion: each event stored once, rejected one by one, counted in its own period."""

from datetime import timedelta

import pytest
from django.utils import timezone

from billing import entitlements, metering
from billing.models import Feature, Meter, Plan, PlanEntitlement, UsageCounter, UsageEvent
from common.errors import ServiceError
from teams import api_keys
from tests.conftest import subscribed

pytestmark = pytest.mark.django_db


def ingest(org, events, now=None):
    return metering.usage_ingest(organization=org, events=events, now=now)


def calls(n, prefix="e", **extra):
    return [{"id": f"{prefix}{i}", "meter": "api_calls", **extra} for i in range(n)]


def used(org, feature):
    return sum(
        UsageCounter.objects.filter(organization=org, feature__key=feature).values_list("used", flat=True)
    )


def test_it_stores_a_batch_and_feeds_the_quota(org):
    result = ingest(
        org,
        [
            *calls(3),
            {"id": "g1", "meter": "ai_generations", "value": 4},
            {"id": "u1", "meter": "active_users", "properties": {"user_id": "ann"}},
        ],
    )
    assert (result.accepted, result.duplicates, result.rejected) == (5, 0, 0)
    assert used(org, "api_calls") == 3
    assert used(org, "ai_generations") == 4
    assert entitlements.check(org, "api_calls").used == 3
    assert UsageEvent.objects.filter(organization=org).count() == 5


def test_it_reports_a_retried_batch_as_duplicates(org):
    batch = calls(10)
    first = ingest(org, batch)
    again = ingest(org, batch)
    assert first.accepted == 10
    assert (again.accepted, again.duplicates, again.rejected) == (0, 10, 0)
    assert {r.status for r in again.results} == {"duplicate"}
    assert used(org, "api_calls") == 10
    assert UsageEvent.objects.filter(organization=org).count() == 10


def test_it_counts_an_id_repeated_within_a_batch_once(org):
    result = ingest(org, [*calls(2), *calls(2)])
    assert [r.status for r in result.results] == ["accepted", "accepted", "duplicate", "duplicate"]
    assert used(org, "api_calls") == 2


def test_it_keeps_event_ids_apart_between_organizations(org, outsider):
    other = outsider.memberships.get().organization
    ingest(org, calls(1))
    assert ingest(other, calls(1)).accepted == 1


@pytest.mark.parametrize(
    ("event", "field", "code"),
    [
        ("not an object", "", "invalid_event"),
        ({"meter": "api_calls"}, "id", "required"),
        ({"id": "x" * 256, "meter": "api_calls"}, "id", "invalid_id"),
        ({"id": "a", "meter": "nope"}, "meter", "unknown_meter"),
        ({"id": "a", "meter": "ai_generations", "value": 1.5}, "value", "invalid_value"),
        ({"id": "a", "meter": "ai_generations", "value": "3"}, "value", "invalid_value"),
        ({"id": "a", "meter": "ai_generations", "value": -1}, "value", "negative_value"),
        ({"id": "a", "meter": "ai_generations", "timestamp": "yesterday"}, "timestamp", "invalid_timestamp"),
        (
            {"id": "a", "meter": "ai_generations", "timestamp": "2026-01-01T00:00:00"},
            "timestamp",
            "invalid_timestamp",
        ),
        ({"id": "a", "meter": "api_calls", "timestamp": "2020-01-01T00:00:00Z"}, "timestamp", "too_late"),
        ({"id": "a", "meter": "api_calls", "properties": [1]}, "properties", "invalid_properties"),
        ({"id": "a", "meter": "active_users"}, "properties.user_id", "required"),
    ],
)
def test_it_rejects_an_invalid_event_and_lands_the_others(org, event, field, code):
    result = ingest(org, [event, *calls(2, prefix="ok")])
    rejected, *rest = result.results
    assert (rejected.status, rejected.field, rejected.code) == ("rejected", field, code)
    assert rejected.message
    assert [r.status for r in rest] == ["accepted", "accepted"]
    assert UsageEvent.objects.filter(organization=org).count() == 2
    assert used(org, "ai_generations") == 0


def test_it_rejects_events_from_the_future(org):
    now = timezone.now()
    late = (now + timedelta(minutes=10)).isoformat()
    result = ingest(org, [{"id": "f", "meter": "api_calls", "timestamp": late}], now=now)
    assert result.results[0].code == "timestamp_in_future"


def test_it_refuses_what_passes_the_quota_and_keeps_what_fits(org):
    entitlements.consume(org, "api_calls", 998, idempotency_key="fill")
    result = ingest(org, calls(5))
    assert [r.status for r in result.results] == ["accepted"] * 2 + ["rejected"] * 3
    assert {r.code for r in result.results[2:]} == {"quota_exceeded"}
    assert used(org, "api_calls") == 1000
    assert set(UsageEvent.objects.filter(source="ingest").values_list("event_id", flat=True)) == {"e0", "e1"}
    # A refused event was not stored: once there is room, the same id is accepted.
    UsageCounter.objects.filter(organization=org, feature__key="api_calls").update(used=0)
    assert ingest(org, calls(5)).accepted == 3


def test_it_bills_overage_instead_of_refusing_when_the_plan_says_so(org):
    subscribed(org, "team_monthly")
    result = ingest(org, [{"id": "g", "meter": "ai_generations", "value": 700}])
    assert result.accepted == 1
    assert used(org, "ai_generations") == 700


def test_it_refuses_a_meter_whose_feature_the_plan_lacks(org):
    Plan.objects.get(key="free").entitlements.filter(feature__key="ai_generations").update(enabled=False)
    entitlements.invalidate_catalog()
    result = ingest(org, [{"id": "g", "meter": "ai_generations", "value": 1}])
    assert result.results[0].code == "not_included"


def test_it_counts_a_late_event_in_its_own_period_within_the_grace_window(org):
    now = timezone.now()
    period = entitlements.effective_for(org, now=now).period(now)
    after_end = period.end + timedelta(minutes=30)
    just_before = (period.end - timedelta(minutes=1)).isoformat()
    result = ingest(
        org, [{"id": "late", "meter": "ai_generations", "value": 3, "timestamp": just_before}], now=after_end
    )
    assert result.accepted == 1
    counter = UsageCounter.objects.get(organization=org, feature__key="ai_generations")
    assert (counter.period_start, counter.used) == (period.start, 3)
    assert UsageEvent.objects.get(event_id="late").period_start == period.start

    too_late = period.end + metering.LATE_GRACE + timedelta(seconds=1)
    refused = ingest(
        org, [{"id": "later", "meter": "ai_generations", "timestamp": just_before}], now=too_late
    )
    assert refused.results[0].code == "too_late"


def test_one_batch_across_a_period_boundary_counts_each_event_in_its_own_period(org):
    now = timezone.now()
    period = entitlements.effective_for(org, now=now).period(now)
    after_end = period.end + timedelta(minutes=30)
    moments = {
        "before": period.end - timedelta(seconds=1),
        "at-end": period.end,  # periods are half-open: the next period's first moment
        "late": period.end - timedelta(minutes=5),
        "after": period.end + timedelta(minutes=1),
        "start": period.start,
    }
    events = [
        {"id": name, "meter": "ai_generations", "value": 1, "timestamp": at.isoformat()}
        for name, at in moments.items()
    ]
    assert ingest(org, events, now=after_end).accepted == 5
    stored = dict(UsageEvent.objects.filter(organization=org).values_list("event_id", "period_start"))
    nxt = entitlements.effective_for(org, now=after_end).period(after_end)
    assert nxt.start == period.end
    assert stored == {
        "before": period.start,
        "at-end": nxt.start,
        "late": period.start,
        "after": nxt.start,
        "start": period.start,
    }
    counters = dict(
        UsageCounter.objects.filter(organization=org, feature__key="ai_generations").values_list(
            "period_start", "used"
        )
    )
    assert counters == {period.start: 3, nxt.start: 2}


def test_it_refuses_more_than_a_thousand_events(org):
    with pytest.raises(ServiceError) as error:
        ingest(org, calls(1001))
    assert error.value.code == "batch_too_large"


def test_a_batch_of_a_thousand_takes_a_handful_of_queries(org, django_assert_max_num_queries):
    subscribed(org, "enterprise")
    metering.meters_by_key()
    entitlements.effective_for(org)
    with django_assert_max_num_queries(8):
        result = ingest(org, calls(1000))
    assert result.accepted == 1000


# --- Aggregations -------------------------------------------------------------------------


def test_it_aggregates_each_meter_its_own_way(org):
    ingest(
        org,
        [
            {"id": "u1", "meter": "active_users", "properties": {"user_id": "ann"}},
            {"id": "u2", "meter": "active_users", "properties": {"user_id": "bob"}},
            {"id": "u3", "meter": "active_users", "properties": {"user_id": "ann"}},
            {"id": "p1", "meter": "peak_connections", "value": 7},
            {"id": "p2", "meter": "peak_connections", "value": 12},
            {"id": "p3", "meter": "peak_connections", "value": 3},
        ],
    )
    now = timezone.now()
    ingest(
        org,
        [
            {
                "id": "s1",
                "meter": "storage_gb",
                "value": 40,
                "timestamp": (now - timedelta(seconds=30)).isoformat(),
            },
            {
                "id": "s2",
                "meter": "storage_gb",
                "value": 25,
                "timestamp": (now - timedelta(seconds=10)).isoformat(),
            },
            {
                "id": "s3",
                "meter": "storage_gb",
                "value": 90,
                "timestamp": (now - timedelta(seconds=20)).isoformat(),
            },
            {"id": "g1", "meter": "ai_generations", "value": 5},
            {"id": "g2", "meter": "ai_generations", "value": 4},
        ],
        now=now,
    )
    _, totals = metering.meter_totals(organization=org, now=now)
    by_key = {t.meter.key: t.total for t in totals}
    assert by_key == {
        "api_calls": 0,
        "ai_generations": 9,  # sum
        "active_users": 2,  # distinct user_id
        "peak_connections": 12,  # max
        "storage_gb": 25,  # the value with the latest timestamp, whatever the arrival order
    }
    period = entitlements.effective_for(org, now=now).period(now)
    meter = Meter.objects.get(key="ai_generations")
    assert metering.meter_aggregate(organization=org, meter=meter, period_start=period.start) == 9


@pytest.fixture
def seats_quota(org):
    """A metered feature fed by a unique-count meter: at most 2 distinct users a period."""
    feature = Feature.objects.create(key="monthly_users", name="Monthly users", kind="metered", reset="month")
    PlanEntitlement.objects.create(plan=Plan.objects.get(key="free"), feature=feature, enabled=True, limit=2)
    Meter.objects.create(
        key="monthly_users",
        name="Monthly users",
        aggregation="unique_count",
        property="user_id",
        feature=feature,
    )
    entitlements.invalidate_catalog()


def test_it_feeds_a_quota_with_distinct_values(org, seats_quota):
    def seen(event_id, user):
        return {"id": event_id, "meter": "monthly_users", "properties": {"user_id": user}}

    result = ingest(org, [seen("1", "ann"), seen("2", "ann"), seen("3", "bob"), seen("4", "cat")])
    assert [r.status for r in result.results] == ["accepted", "accepted", "accepted", "rejected"]
    # Users already counted this period are always welcome.
    assert ingest(org, [seen("5", "bob"), seen("6", "dan")]).results[0].status == "accepted"
    assert used(org, "monthly_users") == 2


def test_it_feeds_a_quota_with_the_highest_value(org):
    feature = Feature.objects.create(key="peak", name="Peak", kind="metered", reset="month")
    PlanEntitlement.objects.create(plan=Plan.objects.get(key="free"), feature=feature, enabled=True, limit=10)
    Meter.objects.create(key="peak", name="Peak", aggregation="max", feature=feature)
    entitlements.invalidate_catalog()
    result = ingest(
        org,
        [
            {"id": "a", "meter": "peak", "value": 4},
            {"id": "b", "meter": "peak", "value": 11},
            {"id": "c", "meter": "peak", "value": 9},
        ],
    )
    assert [r.status for r in result.results] == ["accepted", "rejected", "accepted"]
    assert used(org, "peak") == 9


# --- The API ------------------------------------------------------------------------------


@pytest.fixture
def key_client(api_client, org, owner):
    _, secret = api_keys.api_key_create(organization=org, actor=owner, name="server")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return api_client


def test_it_answers_each_event_in_order_over_the_api(key_client, org):
    body = {"events": [{"id": "a", "meter": "api_calls"}, {"id": "b", "meter": "nope"}]}
    response = key_client.post("/api/v1/usage/events", body, format="json")
    assert response.status_code == 200
    data = response.json()
    assert (data["accepted"], data["duplicates"], data["rejected"]) == (1, 0, 1)
    assert data["results"][0] == {"id": "a", "status": "accepted"}
    assert data["results"][1]["code"] == "unknown_meter"
    assert data["results"][1]["field"] == "meter"
    again = key_client.post("/api/v1/usage/events", body, format="json").json()
    assert again["results"][0] == {"id": "a", "status": "duplicate"}


def test_the_api_refuses_an_oversized_batch_and_stores_nothing(key_client, org):
    body = {"events": calls(1001)}
    response = key_client.post("/api/v1/usage/events", body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"
    assert "events" in response.json()["fields"]
    assert not UsageEvent.objects.exists()


def test_the_api_refuses_a_body_without_events(key_client):
    response = key_client.post("/api/v1/usage/events", {"event": []}, format="json")
    assert response.status_code == 400
    assert response.json()["fields"]["events"]


def test_the_summary_shows_totals_and_the_invoice_preview(key_client, org):
    subscribed(org, "team_monthly")
    ingest(org, [{"id": "g", "meter": "ai_generations", "value": 520}])
    data = key_client.get("/api/v1/usage/summary").json()
    meters = {m["meter"]: m for m in data["meters"]}
    assert meters["ai_generations"]["total"] == 520
    line = data["invoice_preview"]["lines"][0]
    assert (line["feature"], line["quantity"], line["included"], line["overage"], line["amount"]) == (
        "ai_generations",
        520,
        500,
        20,
        100,
    )


def test_a_meter_turned_off_in_the_catalog_is_refused_by_the_next_batch(org):
    subscribed(org, "enterprise")
    assert ingest(org, calls(1, prefix="before")).accepted == 1  # the meters are kept in the process
    Meter.objects.filter(key="api_calls").update(is_active=False)
    entitlements.invalidate_catalog()
    refused = ingest(org, calls(1, prefix="after"))
    assert (refused.accepted, refused.results[0].field) == (0, "meter")


def test_a_batch_reads_the_meters_without_a_cache_round_trip_once_kept(org, django_assert_max_num_queries):
    subscribed(org, "enterprise")
    ingest(org, calls(1, prefix="warm"))
    version = entitlements.catalog_version()
    from django.core.cache import cache

    cache.delete(f"billing:meters:2:{version}")  # gone from Redis: the process still has them
    # The events' insert, the counter's move, their days' upsert, and the transaction's own two.
    with django_assert_max_num_queries(5):
        assert ingest(org, calls(1, prefix="kept")).accepted == 1
