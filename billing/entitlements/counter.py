"""The one writer of `UsageCounter`: every change to a period's usage goes through
`usage_counter_add`, whether it comes from `entitlements.consume` / `release` or from a batch of
ingested events."""

from dataclasses import dataclass

from django.db import connection

from billing.models import UsageCounter
from billing.periods import Period


@dataclass(frozen=True)
class CounterMove:
    before: int
    after: int
    taken: int  # how many of the amounts were applied (a prefix)


_WHERE = "organization_id = %s AND feature_id = %s AND period_start = %s"


def usage_counter_add(
    *, organization_id: int, feature_id: int, period: Period, amounts: list[int], ceiling: int | None = None
) -> CounterMove:
    """Add the longest prefix of `amounts` that keeps the counter at or under `ceiling` (all of
    them when there is none), in one statement that locks the counter row, so concurrent writers
    are applied one after the other, never interleaved. A negative amount gives units back; the
    counter stops at zero. The period's counter is created on first use.

    Only a conditional statement moves the counter: never read, then write, from Python (except
    on SQLite, which serializes writers).
    """
    key = [organization_id, feature_id, connection.ops.adapt_datetimefield_value(period.start)]
    sums, running = [], 0
    for amount in amounts:
        running += amount
        sums.append(running)
    move = _add(key, sums, ceiling)
    if move is None:  # the period's first usage: create its counter, then move it
        # One statement, and no savepoint: a concurrent first use makes this a no-op.
        UsageCounter.objects.bulk_create(
            [
                UsageCounter(
                    organization_id=organization_id,
                    feature_id=feature_id,
                    period_start=period.start,
                    period_end=period.end,
                )
            ],
            ignore_conflicts=True,
        )
        move = _add(key, sums, ceiling)
    return move


def _add(key: list, sums: list[int], ceiling: int | None) -> CounterMove | None:
    table = UsageCounter._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            return _add_portable(cursor, table, key, sums, ceiling)
        cursor.execute(
            f"WITH cur AS (SELECT id, used FROM {table} WHERE {_WHERE} FOR UPDATE), "  # noqa: S608 (names are ours)
            "pick AS (SELECT cur.id, cur.used, COALESCE(MAX(t.n), 0) AS n FROM cur "
            "LEFT JOIN unnest(%s::bigint[]) WITH ORDINALITY AS t(s, n) "
            "ON %s::bigint IS NULL OR cur.used + t.s <= %s "
            "GROUP BY cur.id, cur.used) "
            f"UPDATE {table} c SET used = GREATEST(pick.used + COALESCE((%s::bigint[])[pick.n], 0), 0) "
            "FROM pick WHERE c.id = pick.id RETURNING pick.used, c.used, pick.n",
            [*key, sums, ceiling, ceiling, sums],
        )
        row = cursor.fetchone()
    return CounterMove(*row) if row else None


def _add_portable(cursor, table, key, sums, ceiling) -> CounterMove | None:
    cursor.execute(f"SELECT used FROM {table} WHERE {_WHERE}", key)  # noqa: S608
    row = cursor.fetchone()
    if row is None:
        return None
    before = row[0]
    taken = len(sums) if ceiling is None else sum(1 for s in sums if before + s <= ceiling)
    after = max(before + (sums[taken - 1] if taken else 0), 0)
    cursor.execute(f"UPDATE {table} SET used = %s WHERE {_WHERE}", [after, *key])  # noqa: S608
    return CounterMove(before, after, taken)
