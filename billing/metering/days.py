"""Usage by day (`UsageDay`): written with the events, read by the charts and period totals.

Every statement that stores usage events adds them to their days in the same transaction, so
a day's row is always the sum of its committed events. A batch is first folded into one
change per day (one multi-row upsert, in key order, so two batches never wait on each other
in opposite orders).
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime

from django.db import connection
from django.db.models import F, Max, Q, Sum
from django.db.models.functions import Greatest

from billing.models import Aggregation, Meter, UsageDay, UsageEvent


@dataclass(frozen=True)
class Recorded:
    """One stored event, as its day needs it."""

    subject: int  # the meter's id, or the feature's for units consumed through the entitlements
    period_start: datetime
    timestamp: datetime
    event: int  # the event's id: of two events at the same instant, the later one is the latest
    value: int
    new_value: bool = False  # the first event of the period with this unique-count value


@dataclass
class _Change:
    total: int = 0
    events: int = 0
    peak: int | None = None
    last: tuple[datetime, int, int] | None = None  # (timestamp, event id, value)
    distinct_new: int = 0

    def add(self, row: Recorded) -> None:
        self.total += row.value
        self.events += 1
        self.peak = row.value if self.peak is None else max(self.peak, row.value)
        latest = (row.timestamp, row.event, row.value)
        self.last = latest if self.last is None else max(self.last, latest)
        self.distinct_new += row.new_value


# What a day holds, in the order the reads below take it.
_FIGURES = ("total", "events", "peak", "last_at", "last_event", "last_value", "distinct_new")


def day_of(at: datetime) -> date:
    return at.astimezone(UTC).date()


def usage_days_add(*, organization_id: int, by: str, rows: list[Recorded]) -> None:
    """Add stored events to their days. `by`: "meter" (events sent to a meter) or "feature"
    (units consumed or released through the entitlements)."""
    if not rows:
        return
    changes: dict[tuple[int, datetime, date], _Change] = defaultdict(_Change)
    for row in rows:
        changes[(row.subject, row.period_start, day_of(row.timestamp))].add(row)
    ordered = sorted(changes.items())
    if connection.vendor == "postgresql":
        _upsert(organization_id, by, ordered)
    else:
        _upsert_portable(organization_id, by, ordered)


# Only the column name ("meter_id" or "feature_id") is interpolated; values are parameters.
# How a change lands on its day, for every statement that adds to days (see `upsert_into`).
_ON_CONFLICT = """
ON CONFLICT (organization_id, {subject}, period_start, day) WHERE {subject} IS NOT NULL DO UPDATE SET
    total = d.total + EXCLUDED.total,
    events = d.events + EXCLUDED.events,
    peak = GREATEST(d.peak, EXCLUDED.peak),
    last_at = CASE WHEN (EXCLUDED.last_at, EXCLUDED.last_event) > (d.last_at, d.last_event)
        THEN EXCLUDED.last_at ELSE d.last_at END,
    last_event = CASE WHEN (EXCLUDED.last_at, EXCLUDED.last_event) > (d.last_at, d.last_event)
        THEN EXCLUDED.last_event ELSE d.last_event END,
    last_value = CASE WHEN (EXCLUDED.last_at, EXCLUDED.last_event) > (d.last_at, d.last_event)
        THEN EXCLUDED.last_value ELSE d.last_value END,
    distinct_new = d.distinct_new + EXCLUDED.distinct_new
"""


def upsert_into(by: str, select: str) -> str:
    """An INSERT of the days `select` yields (organization_id, subject, period_start, day, total,
    events, peak, last_at, last_event, last_value, distinct_new), each added to its row."""
    return (
        f"INSERT INTO {UsageDay._meta.db_table} AS d (organization_id, {_column(by)}, period_start, day, "
        f"total, events, peak, last_at, last_event, last_value, distinct_new)\n{select}"
        + _ON_CONFLICT.format(subject=_column(by))
    )


_UNNEST = """SELECT %s, s, p, dy, t, n, pk, la, le, lv, dn FROM unnest(
    %s::bigint[], %s::timestamptz[], %s::date[], %s::bigint[], %s::bigint[], %s::bigint[],
    %s::timestamptz[], %s::bigint[], %s::bigint[], %s::bigint[]
) AS u(s, p, dy, t, n, pk, la, le, lv, dn)"""


def _upsert(organization_id: int, by: str, ordered: list) -> None:
    sql = upsert_into(by, _UNNEST)
    columns: list[list] = [[] for _ in range(10)]
    for (subject, period_start, day), c in ordered:
        values = (subject, period_start, day, c.total, c.events, c.peak, *c.last, c.distinct_new)
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    with connection.cursor() as cursor:
        cursor.execute(sql, [organization_id, *columns])


def _column(by: str) -> str:
    if by not in ("meter", "feature"):
        raise ValueError(f"usage days are kept by meter or by feature, not {by!r}")
    return f"{by}_id"


def _upsert_portable(organization_id: int, by: str, ordered: list) -> None:
    # SQLite (the offline demo) serializes writers, so a read and an update are enough.
    for (subject, period_start, day), c in ordered:
        row, _ = UsageDay.objects.get_or_create(
            organization_id=organization_id, period_start=period_start, day=day, **{_column(by): subject}
        )
        latest = c.last if row.last_at is None or c.last[:2] > (row.last_at, row.last_event) else None
        UsageDay.objects.filter(pk=row.pk).update(
            total=F("total") + c.total,
            events=F("events") + c.events,
            peak=c.peak if row.peak is None else Greatest("peak", c.peak),
            distinct_new=F("distinct_new") + c.distinct_new,
            **(dict(zip(("last_at", "last_event", "last_value"), latest, strict=True)) if latest else {}),
        )


def distinct_lock(organization_id: int, meter_id: int, period_start: datetime) -> None:
    """Serialize the batches that may record new values of one unique-count meter in one
    period (a fed meter's counter lock does it too; a meter that feeds nothing has no counter)."""
    if connection.vendor != "postgresql":
        return
    key = f"usage-distinct:{organization_id}:{meter_id}:{period_start.isoformat()}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [key])


def period_totals(*, organization_id: int, meters: list[Meter], period_start: datetime) -> dict[int, int]:
    """Each meter's aggregation over the period's events sent to it, from its days; meters
    without events in the period are left out."""
    by_meter = {m.pk: m for m in meters}
    rows = (
        UsageDay.objects.filter(
            organization_id=organization_id, meter_id__in=by_meter, period_start=period_start
        )
        .values("meter_id")
        .annotate(total=Sum("total"), events=Sum("events"), peak=Max("peak"), distinct=Sum("distinct_new"))
    )
    totals = {}
    for row in rows:
        aggregation = by_meter[row["meter_id"]].aggregation
        totals[row["meter_id"]] = {
            Aggregation.SUM: row["total"],
            Aggregation.COUNT: row["events"],
            Aggregation.MAX: row["peak"],
            Aggregation.UNIQUE_COUNT: row["distinct"],
        }.get(aggregation, 0)
    gauges = [pk for pk, m in by_meter.items() if m.aggregation == Aggregation.LAST and pk in totals]
    if gauges:
        latest = (
            UsageDay.objects.filter(
                organization_id=organization_id, meter_id__in=gauges, period_start=period_start
            )
            .order_by("meter_id", "-last_at", "-last_event")
            .distinct("meter_id")
            .values_list("meter_id", "last_value")
            if connection.vendor == "postgresql"
            else _latest_portable(organization_id, gauges, period_start)
        )
        totals.update(dict(latest))
    return totals


def _latest_portable(
    organization_id: int, gauges: list[int], period_start: datetime
) -> list[tuple[int, int]]:
    rows = UsageDay.objects.filter(
        organization_id=organization_id, meter_id__in=gauges, period_start=period_start
    )
    latest: dict[int, tuple] = {}
    for row in rows:
        mark = (row.last_at, row.last_event)
        if row.meter_id not in latest or mark > latest[row.meter_id][0]:
            latest[row.meter_id] = (mark, row.last_value)
    return [(meter, value) for meter, (_, value) in latest.items()]


def daily_values(
    *, organization_id: int, meters: list[Meter], period_start: datetime
) -> dict[int, dict[date, int]]:
    """Each meter's aggregation per day of the period, in one query. A meter that sums or
    counts for a feature also adds the units consumed of that feature through the entitlements
    (each adds its value, as it did to the counter); a unique-count meter's day shows the values
    it first recorded in the period, so its days add up to the period's count."""
    feeds = {
        m.feature_id: m
        for m in meters
        if m.feature_id and m.aggregation in (Aggregation.SUM, Aggregation.COUNT)
    }
    wanted = Q(meter_id__in=[m.pk for m in meters]) | Q(feature_id__in=list(feeds))
    by_meter = {m.pk: m for m in meters}
    values: dict[int, dict[date, int]] = {m.pk: defaultdict(int) for m in meters}
    latest: dict[tuple[int, date], tuple] = {}
    rows = UsageDay.objects.filter(wanted, organization_id=organization_id, period_start=period_start)
    for row in rows.values_list("meter_id", "feature_id", "day", *_FIGURES):
        meter_id, feature_id, day, total, events, peak, last_at, last_event, last_value, distinct_new = row
        if meter_id is None:  # units consumed of a fed feature: its value, for a sum and a count
            values[feeds[feature_id].pk][day] += total
            continue
        aggregation = by_meter[meter_id].aggregation
        if aggregation == Aggregation.SUM:
            values[meter_id][day] += total
        elif aggregation == Aggregation.COUNT:
            values[meter_id][day] += events
        elif aggregation == Aggregation.MAX:
            values[meter_id][day] = max(values[meter_id].get(day, peak), peak)
        elif aggregation == Aggregation.UNIQUE_COUNT:
            values[meter_id][day] += distinct_new
        elif (meter_id, day) not in latest or (last_at, last_event) > latest[(meter_id, day)]:
            latest[(meter_id, day)] = (last_at, last_event)
            values[meter_id][day] = last_value
    return values


def recorded(
    events: list[UsageEvent], *, by: str, new_values: frozenset[int] = frozenset()
) -> list[Recorded]:
    return [
        Recorded(
            subject=getattr(e, _column(by)),
            period_start=e.period_start,
            timestamp=e.timestamp,
            event=e.pk,
            value=e.value,
            new_value=e.pk in new_values,
        )
        for e in events
    ]


# What the days must hold, recomputed from the events (a unique-count value counts on the day
# of its first recorded event, the lowest id, in the period), for the organizations given.
_RECOMPUTE = """
SELECT e.meter_id, e.feature_id, e.period_start, (e.timestamp AT TIME ZONE 'UTC')::date,
    sum(e.value), count(*), max(e.value),
    (array_agg(e.timestamp ORDER BY e.timestamp DESC, e.id DESC))[1],
    (array_agg(e.id ORDER BY e.timestamp DESC, e.id DESC))[1],
    (array_agg(e.value ORDER BY e.timestamp DESC, e.id DESC))[1],
    count(f.id)
FROM {event} e
LEFT JOIN (
    SELECT DISTINCT ON (u.meter_id, u.period_start, u.dimension) u.id
    FROM {event} u JOIN {meter} m ON m.id = u.meter_id
    WHERE m.aggregation = 'unique_count' AND u.organization_id = %(org)s
    ORDER BY u.meter_id, u.period_start, u.dimension, u.id
) f ON f.id = e.id
WHERE e.organization_id = %(org)s
GROUP BY 1, 2, 3, 4
"""


def usage_days_differences(organization_id: int) -> list[str]:
    """Where an organization's days differ from its events (none, unless something wrote events
    around the statements above). PostgreSQL only; it reads every event of the organization."""
    sql = _RECOMPUTE.format(event=UsageEvent._meta.db_table, meter=Meter._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(sql, {"org": organization_id})
        expected = {tuple(row[:4]): tuple(row[4:]) for row in cursor.fetchall()}
    stored = {
        tuple(row[:4]): tuple(row[4:])
        for row in UsageDay.objects.filter(organization_id=organization_id).values_list(
            "meter_id", "feature_id", "period_start", "day", *_FIGURES
        )
    }
    return [
        f"{key}: stored {stored.get(key)}, events say {expected.get(key)}"
        for key in sorted(set(expected) | set(stored), key=str)
        if stored.get(key) != expected.get(key)
    ]
