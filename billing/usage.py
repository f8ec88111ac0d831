"""Metered usage: batches of events in, quotas fed, usage out to Stripe, and the invoice it makes.

Ingestion (`usage_ingest`) validates each event on its own, stores the valid ones with one
multi-row `INSERT ... ON CONFLICT DO NOTHING` (an event id is unique per organization, so a
retried batch finds its events and reports them as duplicates), and moves each fed quota counter
with one conditional statement per (feature, period). Events are counted in the period their own
timestamp falls in, and accepted until a grace window after that period ends.

Reporting goes through an outbox (`MeterReport`): a pending row, with an identifier derived from
(organization, feature, period, window), is committed before Stripe is called, and marked sent
after. A crash in between leaves it pending; the next run sends it again under the same
identifier, which Stripe dedupes. A report Stripe refuses is retried with exponential back-off;
one that ran out of quick retries (or met an authentication error) is marked failed for staff
to see, and is still retried, more slowly, until Stripe has it: usage is never given up on.
"""

import json
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import stripe
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, JSONField, Max, Sum, Value
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from billing import entitlements, pricing, selectors
from billing.entitlements import Decision, FeatureEntitlement, Reason
from billing.models import (
    PLAN_STATUSES,
    Aggregation,
    Feature,
    Meter,
    MeterEvent,
    MeterReport,
    OrgSubscription,
    Overage,
    Plan,
    PlanLineItem,
    UsageCounter,
    UsageEvent,
)
from billing.periods import Period
from billing.stripe_client import stripe_client
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


@dataclass(frozen=True)
class MeterSpec:
    """A meter as the hot path needs it, cached by catalog version."""

    id: int
    key: str
    name: str
    aggregation: str
    property: str
    feature: str | None


@dataclass
class _Valid:
    index: int
    id: str
    meter: MeterSpec
    value: int
    timestamp: datetime
    period: Period
    properties: dict
    dimension: str


class _Invalid(Exception):
    def __init__(self, field: str, code: str, message: str):
        self.field, self.code, self.message = field, code, message


# --- Meters ----------------------------------------------------------------------------------


def meters_by_key() -> dict[str, MeterSpec]:
    """Active meters; one cache read on the hot path, refreshed whenever the catalog changes."""
    key = f"billing:meters:{entitlements.catalog_version()}"
    meters = cache.get(key)
    if meters is None:
        meters = {
            m.key: MeterSpec(
                m.pk, m.key, m.name, m.aggregation, m.property, m.feature.key if m.feature else None
            )
            for m in Meter.objects.filter(is_active=True).select_related("feature")
        }
        cache.set(key, meters, METERS_TTL)
    return meters


# --- Validation ------------------------------------------------------------------------------


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


def _validate(index: int, raw, meters: dict[str, MeterSpec], effective, now: datetime) -> _Valid:
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
    period = effective.period(timestamp)
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
    if meter.feature:
        ent = effective.features.get(meter.feature)
        if ent is None or not ent.enabled:
            raise _Invalid("meter", Reason.NOT_INCLUDED, "Your plan does not include this meter's feature.")
        if effective.restricted(now):
            raise _Invalid("meter", Reason.RESTRICTED, "Usage is paused until the failed payment is settled.")
    return _Valid(index, event_id, meter, value, timestamp, period, properties, dimension)


# --- Ingestion -------------------------------------------------------------------------------


def usage_ingest(*, organization: Organization, events: list, now: datetime | None = None) -> IngestResult:
    """Record a batch of usage events; one result per event, in order.

    Valid events land even when others are rejected; an id already stored (now or in an earlier
    batch, including by a concurrent retry) is a duplicate and changes nothing.
    """
    if len(events) > MAX_BATCH:
        raise ServiceError("batch_too_large", f"Send at most {MAX_BATCH:,} events at a time.", field="events")
    now = now or timezone.now()
    effective = entitlements.effective_for(organization, now=now)
    meters = meters_by_key()
    results: list[EventResult | None] = [None] * len(events)
    valid: list[_Valid] = []
    seen: set[str] = set()
    for index, raw in enumerate(events):
        try:
            event = _validate(index, raw, meters, effective, now)
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
        with transaction.atomic():
            fresh = _insert(organization, valid, now)
            groups: dict[tuple[str, datetime], list[_Valid]] = defaultdict(list)
            for event in valid:
                if event.id in fresh and event.meter.feature:
                    groups[(event.meter.feature, event.period.start)].append(event)
            for (feature, _), group in groups.items():
                ent = effective.features[feature]
                for event in _count(organization, ent, group):
                    refused[event.id] = (
                        Reason.QUOTA_EXCEEDED,
                        f"Your plan's {ent.limit:,} {ent.unit}s are used up.",
                    )
            if refused:
                _delete(organization, list(refused))
        for event in valid:
            if event.id in refused:
                code, message = refused[event.id]
                results[event.index] = EventResult(event.id, Status.REJECTED, code, "meter", message)
            else:
                status = Status.ACCEPTED if event.id in fresh else Status.DUPLICATE
                results[event.index] = EventResult(event.id, status)
    return IngestResult(results)  # type: ignore[arg-type]


def _insert(organization: Organization, events: list[_Valid], now: datetime) -> set[str]:
    """Store the events not stored yet, in one statement; the ids that were new."""
    table = MeterEvent._meta.db_table
    if connection.vendor != "postgresql":
        return _insert_portable(organization, events, now)
    sql = (
        f"INSERT INTO {table} (organization_id, meter_id, event_id, value, timestamp, period_start, "  # noqa: S608
        "properties, dimension, received_at) "
        "SELECT %s, m, e, v, t, p, pr::jsonb, d, %s FROM unnest("
        "%s::bigint[], %s::text[], %s::bigint[], %s::timestamptz[], %s::timestamptz[], %s::text[], %s::text[]"
        ") AS u(m, e, v, t, p, pr, d) "
        "ON CONFLICT (organization_id, event_id) DO NOTHING RETURNING event_id"
    )
    params = [
        organization.pk,
        now,
        [e.meter.id for e in events],
        [e.id for e in events],
        [e.value for e in events],
        [e.timestamp for e in events],
        [e.period.start for e in events],
        [json.dumps(e.properties) for e in events],
        [e.dimension for e in events],
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0] for row in cursor.fetchall()}


def _insert_portable(organization: Organization, events: list[_Valid], now: datetime) -> set[str]:
    # SQLite (the offline demo): one row at a time; the unique constraint still decides.
    fresh = set()
    for e in events:
        try:
            with transaction.atomic():
                MeterEvent.objects.create(
                    organization=organization,
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
        fresh.add(e.id)
    return fresh


def _delete(organization: Organization, event_ids: list[str]) -> None:
    # Only rows this transaction inserted: refused events are never committed.
    MeterEvent.objects.filter(organization=organization, event_id__in=event_ids).delete()


def _ceiling(ent: FeatureEntitlement) -> int | None:
    return None if ent.unlimited or ent.overage == Overage.BILL else ent.limit


def _ensure_counter(organization: Organization, ent: FeatureEntitlement, period: Period) -> None:
    UsageCounter.objects.get_or_create(
        organization=organization,
        feature_id=ent.feature_id,
        period_start=period.start,
        defaults={"period_end": period.end},
    )


def _count(organization: Organization, ent: FeatureEntitlement, group: list[_Valid]) -> list[_Valid]:
    """Move the feature's counter for one period by a group of new events; the refused ones."""
    period = group[0].period
    _ensure_counter(organization, ent, period)
    aggregation = group[0].meter.aggregation
    ceiling = _ceiling(ent)
    if aggregation in (Aggregation.SUM, Aggregation.COUNT):
        amounts = [e.value if aggregation == Aggregation.SUM else 1 for e in group]
        before, after, taken = _add_prefix(organization, ent, period, amounts, ceiling)
        refused = group[taken:]
    elif aggregation == Aggregation.MAX:
        refused = [e for e in group if ceiling is not None and e.value > ceiling]
        kept = [e.value for e in group if ceiling is None or e.value <= ceiling]
        before, after = _raise_to(organization, ent, period, max(kept) if kept else None)
    elif aggregation == Aggregation.UNIQUE_COUNT:
        before, after, refused = _add_distinct(organization, ent, period, group, ceiling)
    else:
        refused = [e for e in group if ceiling is not None and e.value > ceiling]
        before, after = _set_latest(organization, ent, period, group, refused)
    if after != before or refused:
        entitlements.usage_recorded(organization, ent, period, before, after)
    return refused


def _counter_where() -> str:
    return "organization_id = %s AND feature_id = %s AND period_start = %s"


def _add_prefix(organization, ent, period, amounts: list[int], ceiling: int | None) -> tuple[int, int, int]:
    """Add the longest prefix of `amounts` that stays within `ceiling`, in one statement.

    Returns (used before, used after, how many were taken). The counter row is locked by the
    statement itself, so concurrent batches are applied one after the other, never interleaved.
    """
    table = UsageCounter._meta.db_table
    key = [organization.pk, ent.feature_id, connection.ops.adapt_datetimefield_value(period.start)]
    sums, running = [], 0
    for amount in amounts:
        running += amount
        sums.append(running)
    with connection.cursor() as cursor:
        if ceiling is None:
            cursor.execute(
                f"UPDATE {table} SET used = used + %s WHERE {_counter_where()} RETURNING used",  # noqa: S608
                [running, *key],
            )
            after = cursor.fetchone()[0]
            return after - running, after, len(amounts)
        if connection.vendor != "postgresql":
            return _add_prefix_portable(cursor, table, key, sums, ceiling)
        cursor.execute(
            f"WITH cur AS (SELECT id, used FROM {table} WHERE {_counter_where()} FOR UPDATE), "  # noqa: S608
            "pick AS (SELECT cur.id, cur.used, COALESCE(MAX(t.n), 0) AS n FROM cur "
            "LEFT JOIN unnest(%s::bigint[]) WITH ORDINALITY AS t(s, n) ON cur.used + t.s <= %s "
            "GROUP BY cur.id, cur.used) "
            f"UPDATE {table} c SET used = pick.used + COALESCE((%s::bigint[])[pick.n], 0) "
            "FROM pick WHERE c.id = pick.id RETURNING pick.used, c.used, pick.n",
            [*key, sums, ceiling, sums],
        )
        before, after, taken = cursor.fetchone()
    return before, after, taken


def _add_prefix_portable(cursor, table, key, sums, ceiling) -> tuple[int, int, int]:
    # SQLite serializes writers, so a read then a write in one transaction is exact there.
    cursor.execute(f"SELECT used FROM {table} WHERE {_counter_where()}", key)  # noqa: S608
    before = cursor.fetchone()[0]
    taken = sum(1 for s in sums if before + s <= ceiling)
    added = sums[taken - 1] if taken else 0
    cursor.execute(f"UPDATE {table} SET used = used + %s WHERE {_counter_where()}", [added, *key])  # noqa: S608
    return before, before + added, taken


def _lock(organization, ent, period) -> int:
    return (
        UsageCounter.objects.select_for_update()
        .filter(organization=organization, feature_id=ent.feature_id, period_start=period.start)
        .values_list("used", flat=True)
        .get()
    )


def _store(organization, ent, period, used: int) -> None:
    UsageCounter.objects.filter(
        organization=organization, feature_id=ent.feature_id, period_start=period.start
    ).update(used=used)


def _raise_to(organization, ent, period, value: int | None) -> tuple[int, int]:
    before = _lock(organization, ent, period)
    after = max(before, value) if value is not None else before
    if after != before:
        _store(organization, ent, period, after)
    return before, after


def _add_distinct(organization, ent, period, group: list[_Valid], ceiling) -> tuple[int, int, list[_Valid]]:
    """Count values of the property not seen before in the period. The counter row is locked
    first, so the values another batch committed meanwhile are seen and never counted twice."""
    before = _lock(organization, ent, period)
    dims = list(dict.fromkeys(e.dimension for e in group))
    known = set(
        MeterEvent.objects.filter(
            organization=organization,
            meter_id=group[0].meter.id,
            period_start=period.start,
            dimension__in=dims,
        )
        .exclude(event_id__in=[e.id for e in group])
        .values_list("dimension", flat=True)
    )
    new = [d for d in dims if d not in known]
    room = len(new) if ceiling is None else max(ceiling - before, 0)
    admitted = set(new[:room])
    refused = [e for e in group if e.dimension not in known and e.dimension not in admitted]
    after = before + len(admitted)
    if admitted:
        _store(organization, ent, period, after)
    return before, after, refused


def _set_latest(organization, ent, period, group, refused) -> tuple[int, int]:
    before = _lock(organization, ent, period)
    latest = (
        MeterEvent.objects.filter(
            organization=organization, meter_id=group[0].meter.id, period_start=period.start
        )
        .exclude(event_id__in=[e.id for e in refused])
        .order_by("-timestamp", "-pk")
        .values_list("value", flat=True)
        .first()
    )
    after = before if latest is None else latest
    if after != before:
        _store(organization, ent, period, after)
    return before, after


# --- The sample product's API calls ----------------------------------------------------------

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


# --- Reading usage ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MeterTotal:
    meter: Meter
    total: int
    decision: Decision | None  # the fed feature's quota, when there is one

    @property
    def percent(self) -> int:
        return self.decision.percent if self.decision else 0


def _event_aggregates(organization, meters: list[Meter], period_start: datetime) -> dict[int, int]:
    rows = (
        MeterEvent.objects.filter(organization=organization, period_start=period_start, meter__in=meters)
        .values("meter_id")
        .annotate(
            sum=Sum("value"), count=Count("id"), max=Max("value"), unique=Count("dimension", distinct=True)
        )
    )
    by_meter = {m.pk: m for m in meters}
    totals = {}
    for row in rows:
        meter = by_meter[row["meter_id"]]
        totals[meter.pk] = {
            Aggregation.SUM: row["sum"],
            Aggregation.COUNT: row["count"],
            Aggregation.MAX: row["max"],
            Aggregation.UNIQUE_COUNT: row["unique"],
        }.get(meter.aggregation, 0)
    for meter in meters:
        if meter.aggregation == Aggregation.LAST and meter.pk in totals:
            totals[meter.pk] = (
                MeterEvent.objects.filter(organization=organization, period_start=period_start, meter=meter)
                .order_by("-timestamp", "-pk")
                .values_list("value", flat=True)
                .first()
            )
    return totals


def meter_aggregate(*, organization: Organization, meter: Meter, period_start: datetime) -> int:
    """A meter's value for one period, computed from its stored events."""
    return _event_aggregates(organization, [meter], period_start).get(meter.pk, 0) or 0


def meter_totals(
    *, organization: Organization, now: datetime | None = None
) -> tuple[Period, list[MeterTotal]]:
    """Every active meter's total for the current period, with its quota when it feeds one.

    A meter that feeds a feature reads the feature's counter, which also holds usage recorded
    through `entitlements.consume` (e.g. the product's generations).
    """
    now = now or timezone.now()
    period = entitlements.effective_for(organization, now=now).period(now)
    meters = list(Meter.objects.filter(is_active=True).select_related("feature"))
    aggregates = _event_aggregates(organization, [m for m in meters if m.feature is None], period.start)
    # Exact counts from the counters (one query), not the cached ones `check` answers from.
    counted = dict(
        UsageCounter.objects.filter(organization=organization, period_start=period.start).values_list(
            "feature_id", "used"
        )
    )
    totals = []
    for meter in meters:
        if meter.feature:
            decision = entitlements.check(organization, meter.feature.key, 0, now=now)
            decision = replace(decision, used=counted.get(meter.feature_id, 0))
            totals.append(MeterTotal(meter, decision.used, decision))
        else:
            totals.append(MeterTotal(meter, aggregates.get(meter.pk) or 0, None))
    return period, totals


@dataclass(frozen=True)
class Bar:
    label: str
    day: str
    value: int
    percent: int


def daily_usage(*, organization: Organization, meter: Meter, period: Period, now: datetime) -> list[Bar]:
    """One bar per day of the period so far: the meter's aggregation over that day's events."""
    events = MeterEvent.objects.filter(organization=organization, meter=meter, period_start=period.start)
    per_day = {
        Aggregation.SUM: Sum("value"),
        Aggregation.COUNT: Count("id"),
        Aggregation.MAX: Max("value"),
        Aggregation.UNIQUE_COUNT: Count("dimension", distinct=True),
        Aggregation.LAST: Max("value"),  # refined below: the day's latest value
    }[meter.aggregation]
    values: dict = defaultdict(int)
    for row in events.annotate(day=TruncDate("timestamp")).values("day").annotate(v=per_day):
        values[row["day"]] += row["v"] or 0
    if meter.aggregation == Aggregation.LAST:
        values = defaultdict(int)
        rows = events.annotate(day=TruncDate("timestamp")).order_by("day", "timestamp", "pk")
        for row in rows.values("day", "value"):
            values[row["day"]] = row["value"]
    if meter.feature_id and meter.aggregation in (Aggregation.SUM, Aggregation.COUNT):
        consumed = UsageEvent.objects.filter(
            organization=organization, feature_id=meter.feature_id, period_start=period.start
        )
        for row in consumed.annotate(day=TruncDate("created_at")).values("day").annotate(v=Sum("quantity")):
            values[row["day"]] += row["v"] or 0
    days = []
    day = period.start.date()
    last = min(now, period.end - timedelta(seconds=1)).date()
    while day <= last:
        days.append(day)
        day += timedelta(days=1)
    top = max([values.get(d, 0) for d in days] + [1])
    return [
        Bar(d.strftime("%-d %b"), d.isoformat(), values.get(d, 0), values.get(d, 0) * 100 // top)
        for d in days
    ]


def events_of(
    *,
    organization: Organization,
    meter: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    event_id: str = "",
):
    """Stored usage, newest first: events sent to meters, and units recorded through
    `entitlements.consume` on a metered feature (shown under the meter that feeds it)."""
    sent = MeterEvent.objects.filter(organization=organization)
    consumed = UsageEvent.objects.filter(organization=organization, feature__meter__isnull=False)
    if meter:
        sent = sent.filter(meter__key=meter)
        consumed = consumed.filter(feature__meter__key=meter)
    if since:
        sent, consumed = sent.filter(timestamp__gte=since), consumed.filter(created_at__gte=since)
    if until:
        sent, consumed = sent.filter(timestamp__lt=until), consumed.filter(created_at__lt=until)
    if event_id:
        sent = sent.filter(event_id__icontains=event_id)
        consumed = consumed.filter(idempotency_key__icontains=event_id)
    # Each side drops its model's default ordering: a compound statement orders once, at the end.
    sent = sent.order_by().values_list(
        "event_id", "meter__key", "value", "timestamp", "properties", "period_start"
    )
    consumed = consumed.order_by().values_list(
        "idempotency_key",
        "feature__meter__key",
        "quantity",
        "created_at",
        Value({}, output_field=JSONField()),
        "period_start",
    )
    return sent.union(consumed, all=True).order_by("-timestamp", "-event_id")


# --- Usage to invoice ------------------------------------------------------------------------


@dataclass(frozen=True)
class PreviewLine:
    feature: Feature
    item: PlanLineItem
    quantity: int
    included: int | None  # None when unlimited
    overage: int
    breakdown: pricing.Breakdown

    @property
    def amount(self) -> int:
        return self.breakdown.total

    @property
    def unit_amount(self) -> int | None:
        return self.item.unit_amount if not self.item.tiers else None


@dataclass(frozen=True)
class InvoicePreview:
    plan: Plan | None
    period: Period
    currency: str
    lines: list[PreviewLine] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)


def _plan_of(organization: Organization) -> Plan | None:
    subscription = OrgSubscription.objects.select_related("plan").filter(organization=organization).first()
    if subscription and subscription.status in PLAN_STATUSES:
        return subscription.plan
    return Plan.objects.filter(is_free=True).first()


def invoice_preview(
    *, organization: Organization, period: Period | None = None, now: datetime | None = None
) -> InvoicePreview:
    """What the period's metered usage adds to the invoice: per billed feature, the quantity,
    the quota the plan includes, the units past it, the tier or unit price, and the amount,
    with Stripe's tier arithmetic."""
    now = now or timezone.now()
    effective = entitlements.effective_for(organization, now=now)
    period = period or effective.period(now)
    plan = _plan_of(organization)
    if plan is None:
        return InvoicePreview(None, period, "usd")
    items = list(plan.line_items.filter(kind=PlanLineItem.Kind.METERED).select_related("feature"))
    used = dict(
        UsageCounter.objects.filter(
            organization=organization, period_start=period.start, feature_id__in=[i.feature_id for i in items]
        ).values_list("feature_id", "used")
    )
    lines = []
    for item in items:
        quantity = used.get(item.feature_id, 0)
        ent = effective.features.get(item.feature.key)
        included = None if ent is None or ent.unlimited else ent.limit
        lines.append(
            PreviewLine(
                feature=item.feature,
                item=item,
                quantity=quantity,
                included=included,
                overage=max(quantity - included, 0) if included is not None else 0,
                breakdown=item.breakdown(quantity),
            )
        )
    return InvoicePreview(plan, period, plan.currency, lines)


# --- Reporting to Stripe ---------------------------------------------------------------------

LEASE = timedelta(minutes=5)
# Quick retries before a report is flagged failed to staff; it is still retried after that.
MAX_ATTEMPTS = 10
RETRY_CEILING = timedelta(hours=6)


@dataclass
class ReportOutcome:
    prepared: int = 0
    sent: int = 0
    failed: int = 0
    retrying: int = 0


def _identifier(organization_id: int, feature: str, period_start: datetime, window: int) -> str:
    return f"tally-{organization_id}-{feature}-{period_start:%Y%m%dT%H%M%S}-{window}"


def usage_report_prepare(*, now: datetime | None = None) -> int:
    """Write a pending report for every billed (organization, feature, period) whose usage
    moved since its last report. Safe to run concurrently and repeatedly: a window is unique,
    and the quantity is the difference from everything already reported, sent or not."""
    now = now or timezone.now()
    subscriptions = OrgSubscription.objects.filter(status__in=PLAN_STATUSES).select_related("plan")
    billed: dict[int, set[int]] = {}
    starts: dict[int, datetime] = {}
    items = PlanLineItem.objects.filter(kind=PlanLineItem.Kind.METERED).exclude(stripe_price_id="")
    by_plan = defaultdict(set)
    for plan_id, feature_id in items.values_list("plan_id", "feature_id"):
        by_plan[plan_id].add(feature_id)
    for sub in subscriptions:
        if by_plan.get(sub.plan_id):
            billed[sub.organization_id] = by_plan[sub.plan_id]
            starts[sub.organization_id] = sub.billing_cycle_anchor
    if not billed:
        return 0
    counters = UsageCounter.objects.filter(
        organization_id__in=billed, period_end__gt=now - LATE_GRACE
    ).select_related("feature", "organization")
    # Every window in the outbox, sent or not: an unsent one (pending or failed) is still owed to
    # Stripe and will be delivered under its own identifier, so a new window must not repeat it
    # (a repeat under a new identifier would be billed twice if the first had reached Stripe).
    queued = {
        (r["organization_id"], r["feature_id"], r["period_start"]): (r["total"], r["window"])
        for r in MeterReport.objects.filter(organization_id__in=billed, period_end__gt=now - LATE_GRACE)
        .values("organization_id", "feature_id", "period_start")
        .annotate(total=Sum("quantity"), window=Max("window"))
    }
    created = 0
    for counter in counters:
        org_id = counter.organization_id
        # Usage from before the subscription (e.g. on the free plan) is not Stripe's to bill.
        if counter.feature_id not in billed[org_id] or counter.period_start < starts[org_id]:
            continue
        total, window = queued.get((org_id, counter.feature_id, counter.period_start), (0, 0))
        if counter.used == total:
            continue
        customer = selectors.stripe_customer_id_of(counter.organization)
        if not customer:
            continue
        try:
            with transaction.atomic():
                MeterReport.objects.create(
                    organization_id=org_id,
                    feature_id=counter.feature_id,
                    period_start=counter.period_start,
                    period_end=counter.period_end,
                    window=window + 1,
                    quantity=counter.used - total,
                    total=counter.used,
                    identifier=_identifier(org_id, counter.feature.key, counter.period_start, window + 1),
                    stripe_customer_id=customer,
                    next_attempt_at=now,
                    created_at=now,
                )
        except IntegrityError:
            continue  # another reporter wrote this window; the next run covers any remainder
        created += 1
    return created


def _claim(report: MeterReport, now: datetime) -> bool:
    """Lease a due report to this sender; an expired lease (a crashed sender) is due again."""
    return (
        MeterReport.objects.filter(
            pk=report.pk, status__in=MeterReport.UNSENT, next_attempt_at__lte=now
        ).update(next_attempt_at=now + LEASE, attempts=F("attempts") + 1)
        == 1
    )


def meter_report_record(*, report: MeterReport, now: datetime) -> None:
    """Stripe accepted the report: mark it sent (once)."""
    MeterReport.objects.filter(pk=report.pk, status__in=MeterReport.UNSENT).update(
        status=MeterReport.Status.SENT, sent_at=now, last_error=""
    )


def backoff(attempts: int) -> timedelta:
    """30 s after the first failure, doubling each time, at most RETRY_CEILING apart."""
    return min(timedelta(seconds=30 * 2 ** min(attempts, 20)), RETRY_CEILING)


def _report_failed(report: MeterReport, error: Exception, now: datetime) -> bool:
    """Back off exponentially. After MAX_ATTEMPTS, or at once on an authentication error (a
    wrong or revoked key: retrying soon will not help), the report is marked failed so staff see
    it, and keeps being retried on the same back-off. True while it is still only pending."""
    attempts = report.attempts + 1
    pending = attempts < MAX_ATTEMPTS and not isinstance(error, stripe.AuthenticationError)
    MeterReport.objects.filter(pk=report.pk, status__in=MeterReport.UNSENT).update(
        status=MeterReport.Status.PENDING if pending else MeterReport.Status.FAILED,
        next_attempt_at=now + backoff(attempts),
        last_error=f"{type(error).__name__}: {error}"[:500],
    )
    return pending


def _event_time(report: MeterReport, now: datetime) -> int:
    # Inside the reported period, whatever the sender's delay: Stripe buckets by this time.
    latest = report.period_end - timedelta(seconds=1)
    return int(max(report.period_start, min(now, latest)).timestamp())


def usage_report_send(
    *, now: datetime | None = None, batch_size: int = 100, only: list[int] | None = None
) -> ReportOutcome:
    """Send due reports (pending, or failed and due again) to Stripe's billing meter events, a
    batch at a time, never inside a transaction. Each carries its deterministic identifier, so a
    resend is a no-op at Stripe. `only` limits the run to those reports."""
    now = now or timezone.now()
    outcome = ReportOutcome()
    client = stripe_client()
    while True:
        due = MeterReport.objects.filter(status__in=MeterReport.UNSENT, next_attempt_at__lte=now)
        if only is not None:
            due = due.filter(pk__in=only)
        due = list(due.select_related("feature").order_by("next_attempt_at", "pk")[:batch_size])
        claimed = [r for r in due if _claim(r, now)]
        for report in claimed:
            params = {
                "event_name": report.feature.key,
                "payload": {"stripe_customer_id": report.stripe_customer_id, "value": str(report.quantity)},
                "identifier": report.identifier,
                "timestamp": _event_time(report, now),
            }
            try:
                client.v1.billing.meter_events.create(params)
            except stripe.StripeError as error:
                if _report_failed(report, error, now):
                    outcome.retrying += 1
                else:
                    outcome.failed += 1
                continue
            meter_report_record(report=report, now=now)
            outcome.sent += 1
        if len(due) < batch_size or not claimed:
            return outcome


def usage_report_run(*, now: datetime | None = None, retry_now: bool = False) -> ReportOutcome:
    """The periodic job: prepare the outbox, then drain it. `retry_now` makes every unsent
    report due at once instead of at its back-off time (Stripe is known to be healthy again)."""
    now = now or timezone.now()
    prepared = usage_report_prepare(now=now)
    if retry_now:
        _make_due(MeterReport.objects.all(), now)
    outcome = usage_report_send(now=now)
    outcome.prepared = prepared
    return outcome


def _make_due(reports, now: datetime) -> list[int]:
    """Bring unsent reports' next attempt forward to `now`; their ids. (One that another sender
    is sending right now may go twice: Stripe keeps the first under its identifier.)"""
    unsent = reports.filter(status__in=MeterReport.UNSENT)
    ids = list(unsent.values_list("pk", flat=True))
    MeterReport.objects.filter(pk__in=ids, next_attempt_at__gt=now).update(next_attempt_at=now)
    return ids


def meter_report_retry(*, reports, now: datetime | None = None) -> ReportOutcome:
    """Staff's "Retry now": send these unsent reports at once, whatever their back-off says.
    Sent ones are left alone; each goes under its own identifier, so a retry never bills twice."""
    now = now or timezone.now()
    return usage_report_send(now=now, only=_make_due(reports, now))
