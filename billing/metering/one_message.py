"""Ingestion in one message: a batch whose events feed at most one quota, by sum or count, and
record no distinct values (nearly every batch of one), stored, counted and added to its days in
one round trip to PostgreSQL. Also the insert both paths share (`INSERT`, `document`)."""

import json
from datetime import datetime

from django.db import connection

from billing import entitlements
from billing.entitlements.decisions import Reason
from billing.metering import days
from billing.metering.counting import _ceiling, _Valid
from billing.models import Aggregation, UsageCounter, UsageEvent
from common.postgresql.prepared import Prepared, one_message_possible
from teams.models import Organization

# The batch travels as one JSON document, unpacked by PostgreSQL: quoting seven arrays of a
# thousand values each, client-side, took a third of the statement's time. The unique index
# holds a digest of organization, source and id (common/digest.py).
INSERT = (
    f"INSERT INTO {UsageEvent._meta.db_table} (organization_id, source, meter_id, event_id, value, "  # noqa: S608
    "timestamp, period_start, properties, dimension, received_at) "
    "SELECT %(org)s, %(source)s, m, e, v, t, p, pr, d, %(now)s FROM jsonb_to_recordset(%(doc)s::jsonb) "
    "AS u(m bigint, e text, v bigint, t timestamptz, p timestamptz, pr jsonb, d text) "
    "ON CONFLICT (tally_digest(organization_id, source, event_id)) DO NOTHING "
    "RETURNING event_id, id"
)


def document(events: list[_Valid], counted: dict[str, int] | None = None) -> str:
    """The batch as the statements read it; `counted`: each counted event's amount, by id."""
    iso: dict[datetime, str] = {}  # the events of a batch share a few periods and timestamps
    rows = [
        {
            "i": e.index,
            "m": e.meter.id,
            "e": e.id,
            "v": e.value,
            "t": iso.get(e.timestamp) or iso.setdefault(e.timestamp, e.timestamp.isoformat()),
            "p": iso.get(e.period.start) or iso.setdefault(e.period.start, e.period.start.isoformat()),
            "pr": e.properties,
            "d": e.dimension,
            "a": counted.get(e.id) if counted else None,
        }
        for e in events
    ]
    return json.dumps(rows)


def refusal(ent) -> tuple[str, str]:
    return Reason.QUOTA_EXCEEDED, f"Your plan's {ent.limit:,} {ent.unit}s are used up."


# A batch whose events feed at most one quota (one feature in one period), by sum or count, and
# record no distinct values (nearly every batch of one) is ingested in one message of three
# statements, one implicit transaction (see common/postgresql/prepared.py): the period's counter
# created if it is the first use, the events stored, then one statement that finds the events
# this transaction stored (their `xmin`), moves the counter by the longest prefix of them that
# stays under the ceiling, with the counter's row locked as `usage_counter_add` locks it, deletes
# the refused ones and adds the rest to their days. Any other batch takes the transactional path,
# which decides the same (`tests/billing/test_usage_one_trip.py` compares the two).
_COUNTER = UsageCounter._meta.db_table
_KEY = (
    "organization_id = %(org)s::bigint AND feature_id = %(feature)s::bigint "
    "AND period_start = %(period_start)s::timestamptz"
)
_COUNTER_ENSURE = (
    f"INSERT INTO {_COUNTER} (organization_id, feature_id, period_start, period_end, used) "  # noqa: S608
    "SELECT %(org)s::bigint, %(feature)s::bigint, %(period_start)s::timestamptz, "
    "%(period_end)s::timestamptz, 0 "
    f"WHERE %(feature)s::bigint IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {_COUNTER} WHERE {_KEY}) "
    "ON CONFLICT DO NOTHING"
)
_LATEST = "ORDER BY t DESC, id DESC, v DESC"
# The kept events (all but the refused) added to their days, as `days.usage_days_add` adds them.
_ADD_DAYS = days.upsert_into(
    "meter",
    "SELECT %(org)s::bigint, m, p, (t AT TIME ZONE 'UTC')::date AS dy, SUM(v), COUNT(*), MAX(v), "  # noqa: S608
    f"(ARRAY_AGG(t {_LATEST}))[1], (ARRAY_AGG(id {_LATEST}))[1], (ARRAY_AGG(v {_LATEST}))[1], 0 "
    "FROM fresh WHERE i NOT IN (SELECT i FROM fits WHERE NOT ok) GROUP BY m, p, dy ORDER BY m, p, dy",
)
_COUNT_AND_ADD = f"""
WITH batch AS (
    SELECT * FROM jsonb_to_recordset(%(doc)s::jsonb)
        AS u(i int, m bigint, e text, v bigint, t timestamptz, p timestamptz, a bigint)
), fresh AS (
    -- Each event looked up through the unique digest, one at a time: as a join, the planner
    -- may scan the organization's events instead, and a busy organization has millions.
    SELECT * FROM (
        SELECT b.i, b.m, b.v, b.t, b.p, b.a, (
            SELECT id FROM {UsageEvent._meta.db_table}
            WHERE tally_digest(organization_id, source, event_id)
                    = tally_digest(%(org)s::bigint, %(source)s::text, b.e)
                AND organization_id = %(org)s::bigint AND source = %(source)s::text AND event_id = b.e
                AND xmin = pg_current_xact_id()::xid
        ) AS id
        FROM batch AS b
        OFFSET 0  -- looked up once per event, not again for the filter below
    ) AS looked_up
    WHERE id IS NOT NULL
), cur AS (
    SELECT id, used FROM {_COUNTER} WHERE {_KEY} FOR UPDATE
), fits AS (
    SELECT r.i, r.id, r.s, (%(ceiling)s::bigint IS NULL OR cur.used + r.s <= %(ceiling)s::bigint) AS ok
    FROM (SELECT i, id, SUM(a) OVER (ORDER BY i) AS s FROM fresh WHERE a IS NOT NULL) AS r CROSS JOIN cur
), moved AS (
    UPDATE {_COUNTER} AS c SET used = cur.used + COALESCE((SELECT MAX(s) FROM fits WHERE ok), 0)
    FROM cur WHERE c.id = cur.id
    RETURNING cur.used AS before, c.used AS after
), gone AS (
    DELETE FROM {UsageEvent._meta.db_table} AS ev USING fits
    WHERE NOT fits.ok AND ev.organization_id = %(org)s::bigint AND ev.id = fits.id
), added AS (
    {_ADD_DAYS}
)
SELECT (SELECT before FROM moved), (SELECT after FROM moved),
    ARRAY(SELECT i FROM fits WHERE NOT ok ORDER BY i)
"""  # noqa: S608 (only our names are interpolated; every value is a parameter)
_ONE_TRIP = Prepared(_COUNTER_ENSURE, INSERT, _COUNT_AND_ADD)


def ingest_one_trip(
    organization: Organization, valid: list[_Valid], effective, now: datetime
) -> tuple[dict[str, int], dict[str, tuple[str, str]]] | None:
    """The batch in one message when it can be (see above), as the transactional path
    (`ingest._ingest_in_transaction`) returns it; None when it cannot."""
    if not one_message_possible(connection):
        return None
    group: tuple[str, datetime] | None = None
    aggregation = period = None
    counted: dict[str, int] = {}
    for event in valid:
        meter = event.meter
        if meter.aggregation == Aggregation.UNIQUE_COUNT:
            return None
        if not meter.counted:
            continue
        if group is None:
            group, aggregation, period = (meter.feature, event.period.start), meter.aggregation, event.period
        elif group != (meter.feature, event.period.start) or meter.aggregation != aggregation:
            return None
        counted[event.id] = event.value if aggregation == Aggregation.SUM else 1
    if aggregation not in (None, Aggregation.SUM, Aggregation.COUNT):
        return None
    ent = effective.features[group[0]] if group else None
    params = {
        "org": organization.pk,
        "source": UsageEvent.Source.INGEST,
        "now": now,
        "doc": document(valid, counted),
        "feature": ent.feature_id if ent else None,
        "period_start": period.start if period else None,
        "period_end": period.end if period else None,
        "ceiling": _ceiling(ent) if ent else None,
    }
    with connection.cursor() as cursor:
        _ONE_TRIP.execute(cursor, params)
        cursor.nextset()  # past the counter's creation
        fresh = dict(cursor.fetchall())
        cursor.nextset()
        before, after, refused_at = cursor.fetchone()
    for event in valid:
        event.pk = fresh.get(event.id, 0)
    refused_at = set(refused_at)
    refused = {event.id: refusal(ent) for event in valid if event.index in refused_at}
    if ent is not None and (after != before or refused):
        entitlements.usage_recorded(organization, ent, period, before, after)
    return fresh, refused
