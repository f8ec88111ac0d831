"""Usage by day: the rows the charts and totals read always equal what their events add up to."""

import importlib
from datetime import UTC, timedelta

import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing import entitlements, metering, reconcile
from billing.models import Meter, UsageDay, UsageEvent
from tests.conftest import subscribed

pytestmark = pytest.mark.django_db

METERS = ["api_calls", "ai_generations", "active_users", "peak_connections", "storage_gb"]


def expected_days(org) -> dict:
    """Each day recomputed from the events, the way the roll-up promises to keep it."""
    days: dict = {}
    seen = set()
    for e in UsageEvent.objects.filter(organization=org).select_related("meter").order_by("id"):
        key = (e.meter_id, e.feature_id, e.period_start, e.timestamp.astimezone(UTC).date())
        day = days.setdefault(
            key, {"total": 0, "events": 0, "peak": e.value, "last": None, "distinct_new": 0}
        )
        day["total"] += e.value
        day["events"] += 1
        day["peak"] = max(day["peak"], e.value)
        day["last"] = max(day["last"] or (e.timestamp, e.id, e.value), (e.timestamp, e.id, e.value))
        if e.meter_id and e.meter.aggregation == "unique_count":
            mark = (e.meter_id, e.period_start, e.dimension)
            day["distinct_new"] += mark not in seen
            seen.add(mark)
    return days


def stored_days(org) -> dict:
    return {
        (d.meter_id, d.feature_id, d.period_start, d.day): {
            "total": d.total,
            "events": d.events,
            "peak": d.peak,
            "last": (d.last_at, d.last_event, d.last_value),
            "distinct_new": d.distinct_new,
        }
        for d in UsageDay.objects.filter(organization=org)
    }


def assert_days_match(org) -> None:
    assert stored_days(org) == expected_days(org)
    assert reconcile.usage_days_check(organizations=[org]) == []


def direct_period_totals(org, period_start) -> dict[str, int]:
    """What the totals were before the roll-up: aggregates over the period's events."""
    totals = {}
    for meter in Meter.objects.all():
        events = UsageEvent.objects.filter(organization=org, meter=meter, period_start=period_start)
        values = list(events.order_by("timestamp", "id").values_list("value", "dimension"))
        if not values:
            continue
        totals[meter.key] = {
            "sum": sum(v for v, _ in values),
            "count": len(values),
            "max": max(v for v, _ in values),
            "unique_count": len({d for _, d in values}),
            "last": values[-1][0],
        }[meter.aggregation]
    return totals


def event(meter: str, n: int, at, value: int, user: int) -> dict:
    body = {"id": f"{meter}-{n}", "meter": meter, "value": value, "timestamp": at.isoformat()}
    if meter == "active_users":
        body["properties"] = {"user_id": f"user{user}"}
    return body


_batches = st.lists(
    st.lists(
        st.tuples(
            st.sampled_from(METERS),
            st.integers(0, 30),  # the event id: repeats are retries
            st.integers(0, 3 * 24 * 60),  # minutes back from now: up to three days
            st.integers(0, 9),
            st.integers(0, 5),  # the unique-count property's value
        ),
        min_size=1,
        max_size=12,
    ),
    min_size=1,
    max_size=5,
)
_consumes = st.lists(st.tuples(st.integers(1, 5), st.booleans()), max_size=4)


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(batches=_batches, consumes=_consumes)
def test_the_days_are_the_sum_of_their_events_whatever_arrives(org, batches, consumes):
    UsageEvent.objects.filter(organization=org).delete()
    UsageDay.objects.filter(organization=org).delete()
    entitlements.invalidate(org)
    now = timezone.now()
    period_start = entitlements.effective_for(org, now=now).period(now).start
    for batch in batches:
        events = [
            event(m, n, max(now - timedelta(minutes=back), period_start), value, user)
            for m, n, back, value, user in batch
        ]
        metering.usage_ingest(organization=org, events=events, now=now)
    for index, (amount, released) in enumerate(consumes):
        key = f"gen-{index}"
        if (
            entitlements.consume(org, "ai_generations", amount, idempotency_key=key, now=now).allowed
            and released
        ):
            entitlements.release(org, "ai_generations", amount, idempotency_key=f"{key}-back", now=now)
    assert_days_match(org)
    totals = metering.days.period_totals(
        organization_id=org.pk, meters=list(Meter.objects.all()), period_start=period_start
    )
    by_key = {m.key: totals[m.pk] for m in Meter.objects.all() if m.pk in totals}
    assert by_key == direct_period_totals(org, period_start)


def test_a_day_counts_a_unique_value_where_it_was_first_recorded_and_adds_up_to_the_period(org):
    subscribed(org, "enterprise")
    now = timezone.now()
    period = entitlements.effective_for(org, now=now).period(now)
    today, earlier = now, max(now - timedelta(days=1), period.start)
    metering.usage_ingest(
        organization=org,
        events=[event("active_users", 1, earlier, 1, 1), event("active_users", 2, earlier, 1, 2)],
        now=now,
    )
    metering.usage_ingest(
        organization=org,
        events=[event("active_users", 3, today, 1, 1), event("active_users", 4, today, 1, 3)],
        now=now,
    )
    meter = Meter.objects.get(key="active_users")
    bars = {
        b.day: b.value for b in metering.daily_usage(organization=org, meter=meter, period=period, now=now)
    }
    counted = sum(bars.values())
    assert counted == metering.meter_aggregate(organization=org, meter=meter, period_start=period.start) == 3
    if earlier.date() != today.date():
        assert (bars[earlier.date().isoformat()], bars[today.date().isoformat()]) == (2, 1)


def test_refused_events_never_reach_their_day(org):
    # Free plan: 1,000 API calls a month. Leave 3, then send 5.
    assert entitlements.consume(org, "api_calls", 997, idempotency_key="setup").allowed
    result = metering.usage_ingest(
        organization=org, events=[{"id": f"c{i}", "meter": "api_calls"} for i in range(5)]
    )
    assert (result.accepted, result.rejected) == (3, 2)
    assert_days_match(org)
    meter = Meter.objects.get(key="api_calls")
    assert UsageDay.objects.get(organization=org, meter=meter).events == 3


def test_the_migration_fills_the_days_from_the_events_already_stored(org):
    subscribed(org, "enterprise")
    now = timezone.now()
    batch = [event(m, n, now - timedelta(hours=n * 7), n, n % 3) for m in METERS for n in range(6)]
    metering.usage_ingest(organization=org, events=batch, now=now)
    entitlements.consume(org, "ai_generations", 4, idempotency_key="g", now=now)
    live = stored_days(org)
    UsageDay.objects.filter(organization=org).delete()
    migration = importlib.import_module("billing.migrations.0031_usage_days")
    from django.apps import apps

    with connection.schema_editor(atomic=False) as editor:
        migration.backfill(apps, editor)
    assert stored_days(org) == live == expected_days(org)


def test_the_reconciliation_names_a_day_that_drifted_from_its_events(org):
    metering.usage_ingest(organization=org, events=[{"id": "c1", "meter": "api_calls"}])
    assert reconcile.usage_days_check(organizations=[org]) == []
    UsageDay.objects.filter(organization=org).update(events=2)
    (breach,) = reconcile.usage_days_check(organizations=[org])
    assert breach.invariant == "I8" and "stored" in breach.detail
