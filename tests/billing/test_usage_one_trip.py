"""Ingestion in one message (`billing/metering/one_message.py`) decides exactly what the transactional path
decides: the same results, counters, stored events and days, batch after batch, duplicates,
refusals at the quota and meters of every kind mixed in."""

import json
import random
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing import entitlements, metering
from billing.metering import one_message
from billing.models import UsageCounter, UsageDay, UsageEvent
from tests.billing.test_usage_days import assert_days_match
from tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db(transaction=True)

COUNTED = {"api_calls", "ai_generations"}
METERS = [*COUNTED, "api_calls", "peak_connections", "storage_gb", "active_users"]


def _batch(rng: random.Random, start, now) -> list:
    events = []
    for _ in range(rng.choice([1, 1, 1, 2, 3, 6])):
        meter = rng.choice(METERS)
        at = start + (now - start) * rng.random()
        event = {"id": f"e{rng.randrange(250)}", "meter": meter, "timestamp": at.isoformat()}
        event["value"] = rng.choice([0, 1, 1, 2, 3, 7]) if meter != "peak_connections" else rng.randrange(50)
        if meter == "active_users":
            event["properties"] = {"user_id": f"u{rng.randrange(5)}"}
        if rng.random() < 0.05:
            event["value"] = -1  # rejected on its own
        events.append(event)
    return events


def _one_trip(events: list) -> bool:
    """Whether the batch can travel in one message: one quota at most, no distinct values."""
    meters = {e["meter"] for e in events if e["value"] >= 0}
    return "active_users" not in meters and len(meters & COUNTED) <= 1


def _state(org) -> dict:
    ids = dict(UsageEvent.objects.filter(organization=org).values_list("id", "event_id"))
    return {
        "counters": {
            key: used
            for key, used in UsageCounter.objects.filter(organization=org).values_list("feature__key", "used")
            if used  # the one-message path may create a period's counter before its first event lands
        },
        "events": sorted(
            UsageEvent.objects.filter(organization=org).values_list(
                "event_id", "meter__key", "value", "timestamp", "period_start", "dimension"
            )
        ),
        "days": sorted(
            (
                d.meter.key if d.meter else d.feature.key,
                *(d.period_start, d.day, d.total, d.events, d.peak, d.last_at),
                ids.get(d.last_event),
                *(d.last_value, d.distinct_new),
            )
            for d in UsageDay.objects.filter(organization=org).select_related("meter", "feature")
        ),
    }


def test_one_message_and_the_transactional_path_decide_alike():
    fast, slow = OrganizationFactory(), OrganizationFactory()
    now = timezone.now()
    start = max(entitlements.effective_for(fast, now=now).period(now).start, now - timedelta(days=2))
    for org in (fast, slow):  # close to the quotas, so that batches get refused
        assert entitlements.consume(org, "api_calls", 990, idempotency_key="setup", now=now).allowed
    for org in (fast, slow):  # prepares the statements, caches the plan
        metering.usage_ingest(organization=org, events=[{"id": "warm", "meter": "peak_connections"}], now=now)
    rng = random.Random(20261203)
    one_message = refused = 0
    for _ in range(120):
        events = _batch(rng, start, now)
        with CaptureQueriesContext(connection) as queries:
            got = metering.usage_ingest(organization=fast, events=events, now=now)
        with transaction.atomic():  # inside a transaction, always the transactional path
            expected = metering.usage_ingest(organization=slow, events=events, now=now)
        assert got.results == expected.results, events
        sent = [q["sql"] for q in queries if not q["sql"].startswith("PREPARE")]
        if _one_trip(events) and any(e["value"] >= 0 for e in events):
            # One message stores and counts; what follows is a crossed threshold's notice.
            assert sent[0].startswith("EXECUTE"), events
            assert not [q for q in sent[1:] if "billing_usageevent" in q or "billing_usagecounter" in q], (
                events
            )
            one_message += 1
        else:
            assert not [q for q in sent if q.startswith("EXECUTE")], events
        refused += sum(r.code == "quota_exceeded" for r in got.results)
    assert _state(fast) == _state(slow)
    # The run went through both paths, and past the quotas.
    assert one_message >= 40
    assert refused >= 5
    assert_days_match(fast)
    assert_days_match(slow)


def test_a_batch_of_one_is_one_message_and_counts_once():
    org = OrganizationFactory()
    event = [{"id": "only", "meter": "api_calls"}]
    metering.usage_ingest(organization=org, events=[{"id": "warm", "meter": "api_calls"}])
    with CaptureQueriesContext(connection) as queries:
        first = metering.usage_ingest(organization=org, events=event)
    again = metering.usage_ingest(organization=org, events=event)
    assert [q["sql"].split()[0] for q in queries] == ["EXECUTE"]
    assert (first.accepted, again.duplicates) == (1, 1)
    assert UsageCounter.objects.get(organization=org, feature__key="api_calls").used == 2
    assert entitlements.check(org, "api_calls", 0).used == 2
    assert_days_match(org)


def test_one_message_refuses_past_the_quota_and_keeps_nothing_of_the_refused():
    org = OrganizationFactory()
    assert entitlements.consume(org, "api_calls", 998, idempotency_key="setup").allowed
    events = [{"id": f"c{n}", "meter": "api_calls"} for n in range(4)]
    result = metering.usage_ingest(organization=org, events=events)
    assert [r.status for r in result.results] == ["accepted", "accepted", "rejected", "rejected"]
    assert {r.code for r in result.results[2:]} == {"quota_exceeded"}
    assert UsageCounter.objects.get(organization=org, feature__key="api_calls").used == 1000
    assert sorted(
        UsageEvent.objects.filter(organization=org, source="ingest").values_list("event_id", flat=True)
    ) == [
        "c0",
        "c1",
    ]
    assert entitlements.check(org, "api_calls", 1).allowed is False
    assert_days_match(org)


def test_the_statement_finds_the_batchs_events_by_their_digest_not_by_a_scan():
    # As a join, the planner took the organization's events by the time index and hashed
    # them: every batch read all of a busy organization's events.
    org = OrganizationFactory()
    now = timezone.now()
    doc = json.dumps([{"i": 0, "m": 1, "e": "x", "v": 1, "t": now.isoformat(), "p": now.isoformat(), "a": 1}])
    params = {
        "org": org.pk,
        "source": "ingest",
        "doc": doc,
        "feature": 1,
        "period_start": now,
        "ceiling": None,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute("EXPLAIN " + one_message._COUNT_AND_ADD, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    fresh = plan[plan.index("CTE fresh") : plan.index("CTE cur")]
    lookups = [line for line in fresh.splitlines() if "billing_usageevent" in line]
    assert lookups and all("billing_usageevent_unique_digest" in line for line in lookups), plan
