"""The merged usage event log's data migration, run on a copy of real-shaped data: the events sent
to meters and the units consumed through the entitlements (with releases, keys shared across
sources and organizations) end in one log with nothing lost, changed or duplicated, and the
counters and the reports to Stripe untouched."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from billing import entitlements, metering
from teams.models import Organization

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("billing", "0014_catalog_push_and_plan_versions")]
AFTER = [("billing", "0017_usage_event_log_rename")]


def latest():
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return MigrationExecutor(connection).loader.project_state(targets).apps


@pytest.fixture
def old_apps():
    yield migrate(BEFORE)
    # Back to the latest schema whatever happened, for the tests that follow.
    migrate(latest())


def _month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def seed(apps, now: datetime) -> dict:
    """Two organizations' month of usage, as the two tables held it."""
    Organization = apps.get_model("teams", "Organization")
    Feature = apps.get_model("billing", "Feature")
    Meter = apps.get_model("billing", "Meter")
    MeterEvent = apps.get_model("billing", "MeterEvent")
    UsageEvent = apps.get_model("billing", "UsageEvent")
    UsageCounter = apps.get_model("billing", "UsageCounter")
    MeterReport = apps.get_model("billing", "MeterReport")
    acme = Organization.objects.create(name="Acme", slug="acme")
    globex = Organization.objects.create(name="Globex", slug="globex")
    start = _month_start(now)
    end = (start + timedelta(days=32)).replace(day=1)
    calls, users = Meter.objects.get(key="api_calls"), Meter.objects.get(key="active_users")
    generations = Feature.objects.get(key="ai_generations")
    sent = [
        MeterEvent(
            organization=acme,
            meter=calls,
            event_id=f"evt-{i}",
            value=1,
            timestamp=start + timedelta(minutes=7 * i),
            period_start=start,
            properties={"path": f"/v1/things/{i % 13}"},
            received_at=start + timedelta(minutes=7 * i, seconds=2),
        )
        for i in range(1500)
    ] + [
        MeterEvent(
            organization=acme,
            meter=users,
            event_id=f"login-{i}",
            value=1,
            timestamp=start + timedelta(hours=i),
            period_start=start,
            properties={"user_id": f"u{i % 40}"},
            dimension=f"u{i % 40}",
            received_at=start + timedelta(hours=i),
        )
        for i in range(300)
    ]
    MeterEvent.objects.bulk_create(sent, batch_size=500)
    consumed = []
    for i in range(400):
        consumed.append(
            UsageEvent(
                organization=acme,
                feature=generations,
                idempotency_key=f"gen-{i}",
                quantity=1 + i % 5,
                period_start=start,
                created_at=start + timedelta(minutes=11 * i, microseconds=123456),
            )
        )
        if i % 10 == 0:  # the work failed: the units given back
            consumed.append(
                UsageEvent(
                    organization=acme,
                    feature=generations,
                    idempotency_key=f"release-gen-{i}",
                    quantity=-(1 + i % 5),
                    period_start=start,
                    created_at=start + timedelta(minutes=11 * i + 1),
                )
            )
    # A consume key equal to an id acme sent to a meter, and keys another organization also uses.
    consumed.append(
        UsageEvent(
            organization=acme,
            feature=generations,
            idempotency_key="evt-7",
            quantity=2,
            period_start=start,
            created_at=start + timedelta(days=3),
        )
    )
    consumed += [
        UsageEvent(
            organization=globex,
            feature=generations,
            idempotency_key=f"gen-{i}",
            quantity=1,
            period_start=start,
            created_at=start + timedelta(hours=i),
        )
        for i in range(5)
    ]
    UsageEvent.objects.bulk_create(consumed, batch_size=500)
    used = sum(e.quantity for e in consumed if e.organization_id == acme.pk)
    UsageCounter.objects.create(
        organization=acme, feature=generations, period_start=start, period_end=end, used=used
    )
    UsageCounter.objects.create(
        organization=acme, feature=calls.feature, period_start=start, period_end=end, used=1500
    )
    UsageCounter.objects.create(
        organization=globex, feature=generations, period_start=start, period_end=end, used=5
    )
    MeterReport.objects.create(
        organization=acme,
        feature=generations,
        period_start=start,
        period_end=end,
        window=1,
        quantity=used,
        total=used,
        identifier="tally-acme-ai_generations-1",
        stripe_customer_id="cus_acme",
        status="sent",
        sent_at=now,
    )
    return {
        "acme": acme.pk,
        "globex": globex.pk,
        "sent": {
            (e.event_id, e.meter_id, e.value, e.timestamp, e.period_start, e.dimension, e.received_at)
            for e in sent
        },
        "consumed": {
            (e.organization_id, e.idempotency_key, e.feature_id, e.quantity, e.created_at, e.period_start)
            for e in consumed
        },
        "generations_used": used,
        "counters": set(
            UsageCounter.objects.values_list("organization_id", "feature_id", "period_start", "used")
        ),
        "reports": list(MeterReport.objects.values()),
    }


def test_it_moves_every_consumed_unit_into_the_one_log_unchanged(old_apps):
    now = datetime.now(UTC)
    before = seed(old_apps, now)

    apps = migrate(AFTER)

    Log = apps.get_model("billing", "UsageEvent")
    assert Log.objects.count() == len(before["sent"]) + len(before["consumed"])
    assert {
        (e.event_id, e.meter_id, e.value, e.timestamp, e.period_start, e.dimension, e.received_at)
        for e in Log.objects.filter(source="ingest")
    } == before["sent"]
    assert not Log.objects.filter(source="ingest", feature__isnull=False).exists()
    moved = Log.objects.filter(source="consume")
    assert {
        (e.organization_id, e.event_id, e.feature_id, e.value, e.timestamp, e.period_start) for e in moved
    } == before["consumed"]
    assert all(e.meter_id is None and e.received_at == e.timestamp and e.properties == {} for e in moved)
    assert Log.objects.get(organization_id=before["acme"], source="ingest", event_id="evt-7").meter_id
    assert (
        set(
            apps.get_model("billing", "UsageCounter").objects.values_list(
                "organization_id", "feature_id", "period_start", "used"
            )
        )
        == before["counters"]
    )
    assert list(apps.get_model("billing", "MeterReport").objects.values()) == before["reports"]

    # Idempotency is the database's still: a consume key once per organization and source...
    first = moved.get(organization_id=before["acme"], event_id="gen-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        Log.objects.create(
            organization_id=before["acme"],
            source="consume",
            feature_id=first.feature_id,
            event_id="gen-1",
            value=1,
            timestamp=now,
            period_start=first.period_start,
        )
    # ...and an event that names neither a meter nor a feature cannot be stored.
    with pytest.raises(IntegrityError), transaction.atomic():
        Log.objects.create(
            organization_id=before["acme"],
            source="consume",
            event_id="gen-new",
            value=1,
            timestamp=now,
            period_start=first.period_start,
        )


def test_it_keeps_migrated_consumes_idempotent_and_shown_under_their_meter(old_apps):
    now = datetime.now(UTC)
    before = seed(old_apps, now)
    migrate(latest())  # the code of today runs on the schema of today
    acme = Organization.objects.get(pk=before["acme"])

    replay = entitlements.consume(acme, "ai_generations", 2, idempotency_key="gen-1", now=now)

    assert replay.replayed and replay.allowed and replay.requested == 2
    assert replay.used == before["generations_used"]  # nothing counted twice
    rows = list(metering.events_of(organization=acme, meter="ai_generations", event_id="release-gen-390"))
    assert [(r[0], r[1], r[2]) for r in rows] == [("release-gen-390", "ai_generations", -1)]


def test_it_migrates_back_to_the_two_tables(old_apps):
    now = datetime.now(UTC)
    before = seed(old_apps, now)
    migrate(AFTER)

    apps = migrate(BEFORE)

    consumed = apps.get_model("billing", "UsageEvent").objects.all()
    assert {
        (e.organization_id, e.idempotency_key, e.feature_id, e.quantity, e.created_at, e.period_start)
        for e in consumed
    } == before["consumed"]
    assert apps.get_model("billing", "MeterEvent").objects.count() == len(before["sent"])
