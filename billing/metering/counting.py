"""The usage counter of a batch's events: sums, distinct counts and latest values, each under the
period's ceiling; and the sample product's API calls."""

from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from billing import entitlements
from billing.entitlements.decisions import FeatureEntitlement
from billing.models import (
    Aggregation,
    MeterEvent,
    Overage,
    UsageCounter,
)
from billing.periods import Period
from teams.models import Organization


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
