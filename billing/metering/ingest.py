"""Metered usage: batches of events in, quotas fed, usage out to Stripe, and the invoice it makes.

Ingestion (`usage_ingest`) validates each event on its own, stores the valid ones with one
multi-row `INSERT ... ON CONFLICT DO NOTHING` (an event id is unique per organization, so a
retried batch finds its events and reports them as duplicates), and moves each fed quota counter
with one conditional statement per (feature, period). Events are counted in the period their own
timestamp falls in, and accepted until a grace window after that period ends. A batch that feeds
at most one quota, by sum or count, travels to PostgreSQL as one message (`billing/metering/one_message.py`);
any other takes the same steps one statement at a time in a transaction.

Reporting goes through an outbox (`MeterReport`): a pending row, with an identifier derived from
(organization, feature, period, window), is committed before Stripe is called, and marked sent
after. A crash in between leaves it pending; the next run sends it again under the same
identifier, which Stripe dedupes. A report Stripe refuses is retried with exponential back-off;
one that ran out of quick retries (or met an authentication error) is marked failed for staff
to see, and is still retried, more slowly, until Stripe has it: usage is never given up on.
"""

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from billing import entitlements
from billing.entitlements.decisions import Decision, Reason
from billing.metering import days
from billing.metering.counting import MeterSpec, _count, _Valid
from billing.metering.one_message import INSERT, document, ingest_one_trip, refusal
from billing.models import (
    Aggregation,
    Feature,
    Meter,
    UsageCounter,
    UsageEvent,
)
from common.errors import ServiceError
from teams.inputs import UNSTORABLE, UNSTORABLE_MESSAGE, unstorable_path
from teams.models import Organization

MAX_BATCH = 1000


MAX_VALUE = 10**12


MAX_ID = 255


# Late events still count in their own period until this long after it ends (Stripe keeps an
# ended period's invoice open for about an hour for the same reason).
LATE_GRACE = timedelta(seconds=getattr(settings, "USAGE_LATE_GRACE_SECONDS", 3600))


FUTURE_SKEW = timedelta(minutes=5)


METERS_TTL = 3600


class Status:
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass(frozen=True)
class EventResult:
    id: str
    status: str
    code: str = ""
    field: str = ""
    message: str = ""


@dataclass(frozen=True)
class IngestResult:
    results: list[EventResult]

    def _count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def accepted(self) -> int:
        return self._count(Status.ACCEPTED)

    @property
    def duplicates(self) -> int:
        return self._count(Status.DUPLICATE)

    @property
    def rejected(self) -> int:
        return self._count(Status.REJECTED)


class _Invalid(Exception):
    def __init__(self, field: str, code: str, message: str):
        self.field, self.code, self.message = field, code, message


# The meters of the current catalog version, kept in this process: the version is the key, so a
# catalog change (which moves it) is seen by the next request of every process.
_local_meters: dict[str, dict[str, MeterSpec]] = {}


def meters_by_key(version: str | None = None) -> dict[str, MeterSpec]:
    """Active meters of catalog `version` (default: read it), refreshed whenever the catalog
    changes. Shared, read-only: a batch that already holds the version reads nothing."""
    version = version or entitlements.catalog_version()
    meters = _local_meters.get(version)
    if meters is not None:
        return meters
    key = f"billing:meters:2:{version}"
    meters = cache.get(key)
    if meters is None:
        meters = {
            m.key: MeterSpec(
                m.pk,
                m.key,
                m.name,
                m.aggregation,
                m.property,
                m.feature.key if m.feature else None,
                gauge=bool(m.feature and m.feature.kind == Feature.Kind.LIMIT),
            )
            for m in Meter.objects.filter(is_active=True).select_related("feature")
        }
        cache.set(key, meters, METERS_TTL)
    _local_meters.clear()
    _local_meters[version] = meters
    return meters


def _timestamp(raw, now: datetime) -> datetime:
    if raw is None:
        return now
    if isinstance(raw, int) and not isinstance(raw, bool):
        try:
            return datetime.fromtimestamp(raw, UTC)
        except (OverflowError, OSError, ValueError):
            raise _Invalid("timestamp", "invalid_timestamp", "Not a valid Unix time.") from None
    try:
        parsed = parse_datetime(raw) if isinstance(raw, str) else None
    except ValueError:  # well formed but not a date, e.g. month 13
        parsed = None
    if parsed is None:
        raise _Invalid("timestamp", "invalid_timestamp", "Use ISO 8601 with a time zone, or Unix seconds.")
    if timezone.is_naive(parsed):
        raise _Invalid("timestamp", "invalid_timestamp", "The timestamp needs a time zone (e.g. Z).")
    return parsed


def _period_finder(effective):
    """`effective.period`, remembering the last period found: periods are contiguous and
    half-open, so one that contains a moment is that moment's period, and a batch's events
    nearly all fall in the same one."""
    last = None

    def period_of(at: datetime):
        nonlocal last
        if last is None or at not in last:
            last = effective.period(at)
        return last

    return period_of


def _validate(index: int, raw, meters: dict[str, MeterSpec], effective, now: datetime, period_of) -> _Valid:
    if not isinstance(raw, dict):
        raise _Invalid("", "invalid_event", "Each event is a JSON object.")
    event_id = raw.get("id")
    if not isinstance(event_id, str) or not event_id.strip():
        raise _Invalid("id", "required", "Every event needs an id, unique to your organization.")
    if len(event_id) > MAX_ID:
        raise _Invalid("id", "invalid_id", f"An id has at most {MAX_ID} characters.")
    if UNSTORABLE.search(event_id):
        raise _Invalid("id", "invalid_characters", UNSTORABLE_MESSAGE)
    name = raw.get("meter")
    if not isinstance(name, str):
        raise _Invalid("meter", "unknown_meter", "Name the event's meter; see the catalog.")
    meter = meters.get(name)
    if meter is None:
        raise _Invalid("meter", "unknown_meter", f'No meter "{name[:64]}"; see the catalog.')
    value = raw.get("value", 1)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Invalid("value", "invalid_value", "The value is a whole number.")
    if value < 0:
        raise _Invalid("value", "negative_value", "The value must not be negative.")
    if value > MAX_VALUE:
        raise _Invalid("value", "value_too_large", f"The value is at most {MAX_VALUE:,}.")
    timestamp = _timestamp(raw.get("timestamp"), now)
    if timestamp > now + FUTURE_SKEW:
        raise _Invalid("timestamp", "timestamp_in_future", "The event's timestamp is in the future.")
    period = period_of(timestamp)
    if period.end + LATE_GRACE <= now:
        raise _Invalid("timestamp", "too_late", "The event's period has closed; it can no longer be counted.")
    properties = raw.get("properties") or {}
    if not isinstance(properties, dict):
        raise _Invalid("properties", "invalid_properties", "Properties are a JSON object.")
    if unstorable_path(properties) is not None:
        raise _Invalid("properties", "invalid_characters", UNSTORABLE_MESSAGE)
    dimension = ""
    if meter.aggregation == Aggregation.UNIQUE_COUNT:
        found = properties.get(meter.property)
        if found is None or isinstance(found, dict | list) or str(found) == "":
            raise _Invalid(
                f"properties.{meter.property}", "required", f"This meter counts distinct {meter.property}s."
            )
        dimension = str(found)
        if len(dimension) > MAX_ID:
            raise _Invalid(f"properties.{meter.property}", "invalid_value", "At most 255 characters.")
    if meter.counted:  # a gauge's reading is a fact, taken whatever the plan
        ent = effective.features.get(meter.feature)
        if ent is None or not ent.enabled:
            raise _Invalid("meter", Reason.NOT_INCLUDED, "Your plan does not include this meter's feature.")
        if effective.restricted(now):
            raise _Invalid("meter", Reason.RESTRICTED, "Usage is paused until the failed payment is settled.")
    return _Valid(index, event_id, meter, value, timestamp, period, properties, dimension)


def usage_ingest(*, organization: Organization, events: list, now: datetime | None = None) -> IngestResult:
    """Record a batch of usage events; one result per event, in order.

    Valid events land even when others are rejected; an id already stored (now or in an earlier
    batch, including by a concurrent retry) is a duplicate and changes nothing.
    """
    if len(events) > MAX_BATCH:
        raise ServiceError("batch_too_large", f"Send at most {MAX_BATCH:,} events at a time.", field="events")
    now = now or timezone.now()
    effective = entitlements.effective_for(organization, now=now)
    meters = meters_by_key(effective.version)
    results: list[EventResult | None] = [None] * len(events)
    valid: list[_Valid] = []
    seen: set[str] = set()
    period_of = _period_finder(effective)
    for index, raw in enumerate(events):
        try:
            event = _validate(index, raw, meters, effective, now, period_of)
        except _Invalid as error:
            event_id = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else ""
            if UNSTORABLE.search(event_id):
                event_id = json.dumps(event_id)[1:-1]  # echoed escaped: it cannot be encoded as is
            results[index] = EventResult(event_id, Status.REJECTED, error.code, error.field, error.message)
            continue
        if event.id in seen:
            results[index] = EventResult(event.id, Status.DUPLICATE)
            continue
        seen.add(event.id)
        valid.append(event)

    refused: dict[str, tuple[str, str]] = {}
    if valid:
        done = ingest_one_trip(organization, valid, effective, now)
        fresh, refused = (
            done if done is not None else _ingest_in_transaction(organization, valid, effective, now)
        )
        for event in valid:
            if event.id in refused:
                code, message = refused[event.id]
                results[event.index] = EventResult(event.id, Status.REJECTED, code, "meter", message)
            else:
                status = Status.ACCEPTED if event.id in fresh else Status.DUPLICATE
                results[event.index] = EventResult(event.id, status)
    return IngestResult(results)  # type: ignore[arg-type]


def _ingest_in_transaction(
    organization: Organization, valid: list[_Valid], effective, now: datetime
) -> tuple[dict[str, int], dict[str, tuple[str, str]]]:
    """Store the batch, count it and add it to its days, one statement at a time in a
    transaction; the ids stored (with their keys) and those refused (with why)."""
    refused: dict[str, tuple[str, str]] = {}
    with transaction.atomic():
        fresh = _insert(organization, valid, now)
        for event in valid:
            event.pk = fresh.get(event.id, 0)
        groups: dict[tuple[str, datetime], list[_Valid]] = defaultdict(list)
        for event in valid:
            if event.id in fresh and event.meter.counted:
                groups[(event.meter.feature, event.period.start)].append(event)
        for (feature, _), group in groups.items():
            ent = effective.features[feature]
            for event in _count(organization, ent, group):
                refused[event.id] = refusal(ent)
        if refused:
            _delete([fresh[event_id] for event_id in refused])
        _roll_up(organization, [e for e in valid if e.id in fresh and e.id not in refused], fresh)
    return fresh, refused


def _roll_up(organization: Organization, stored: list[_Valid], pks: dict[str, int]) -> None:
    """Add the events this batch stored (and kept) to their days, with the unique-count values
    they are the first in their period to record."""
    new_values: set[str] = set()
    groups: dict[tuple[int, datetime], list[_Valid]] = defaultdict(list)
    for event in stored:
        if event.meter.aggregation == Aggregation.UNIQUE_COUNT:
            groups[(event.meter.id, event.period.start)].append(event)
    for (meter_id, period_start), group in sorted(groups.items()):
        days.distinct_lock(organization.pk, meter_id, period_start)
        known = set(
            UsageEvent.objects.filter(
                organization=organization,
                meter_id=meter_id,
                period_start=period_start,
                dimension__in={e.dimension for e in group},
            )
            .exclude(dimension="")  # lets the partial index of values serve it
            .exclude(event_id__in=[e.id for e in group])
            .values_list("dimension", flat=True)
        )
        for event in sorted(group, key=lambda e: pks[e.id]):  # first recorded: the lowest id
            if event.dimension not in known:
                known.add(event.dimension)
                new_values.add(event.id)
    rows = [
        days.Recorded(e.meter.id, e.period.start, e.timestamp, pks[e.id], e.value, e.id in new_values)
        for e in stored
    ]
    days.usage_days_add(organization_id=organization.pk, by="meter", rows=rows)


def _insert(organization: Organization, events: list[_Valid], now: datetime) -> dict[str, int]:
    """Store the events not stored yet, in one statement; the ids that were new, with the
    stored rows' keys."""
    if connection.vendor != "postgresql":
        return _insert_portable(organization, events, now)
    params = {
        "org": organization.pk,
        "source": UsageEvent.Source.INGEST,
        "now": now,
        "doc": document(events),
    }
    with connection.cursor() as cursor:
        cursor.execute(INSERT, params)
        return dict(cursor.fetchall())


def _insert_portable(organization: Organization, events: list[_Valid], now: datetime) -> dict[str, int]:
    # SQLite (the offline demo): one row at a time; the unique constraint still decides.
    fresh = {}
    for e in events:
        try:
            with transaction.atomic():
                stored = UsageEvent.objects.create(
                    organization=organization,
                    source=UsageEvent.Source.INGEST,
                    meter_id=e.meter.id,
                    event_id=e.id,
                    value=e.value,
                    timestamp=e.timestamp,
                    period_start=e.period.start,
                    properties=e.properties,
                    dimension=e.dimension,
                    received_at=now,
                )
        except IntegrityError:
            continue
        fresh[e.id] = stored.pk
    return fresh


def _delete(pks: list[int]) -> None:
    # Only rows this transaction inserted: refused events are never committed.
    UsageEvent.objects.filter(pk__in=pks).delete()


API_CALLS = "api_calls"


def api_call_record(*, organization: Organization, event_id: str, now: datetime | None = None) -> Decision:
    """One authenticated API call: an `api_calls` event, refused past the quota unless the
    plan bills overage. A repeated id (a retried request) is one event."""
    now = now or timezone.now()
    meter = next((m for m in meters_by_key().values() if m.feature == API_CALLS), None)
    if meter is None:  # a catalog without meters: count through the engine directly
        return entitlements.consume(organization, API_CALLS, 1, idempotency_key=event_id, now=now)
    result = usage_ingest(
        organization=organization,
        events=[{"id": event_id, "meter": meter.key, "value": 1, "timestamp": now.isoformat()}],
        now=now,
    ).results[0]
    if result.status != Status.REJECTED:
        return entitlements.check(organization, API_CALLS, 0, now=now)
    if result.code == Reason.QUOTA_EXCEEDED:
        # Refusals are rare and must be explained with the exact count, not a cached one.
        effective = entitlements.effective_for(organization, now=now)
        period = effective.period(now)
        used = (
            UsageCounter.objects.filter(
                organization=organization,
                feature_id=effective.features[API_CALLS].feature_id,
                period_start=period.start,
            )
            .values_list("used", flat=True)
            .first()
        )
        entitlements.usage_cached(organization, API_CALLS, period, used or 0)
        return entitlements.check(organization, API_CALLS, 1, now=now)
    return Decision(API_CALLS, False, result.code, 1)
