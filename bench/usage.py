"""Ingesting usage events: `usage_ingest` against a bare multi-row INSERT of the same rows.

Baseline: one `INSERT ... VALUES (...), (...), ...` per batch of the same rows into the same
table, from a bare psycopg connection, committed per batch (no validation, no idempotency, no
quota). Ours: `usage_ingest`, which validates every event, dedupes ids with ON CONFLICT, and moves
the quota counter with its conditional statement. Both run in the same process on the same
database, for batches of 1, 100 and 1,000 events. Budget: 0.3x the baseline for batches of 1,000.

`BENCH_USAGE_HISTORY` (default "0"), a comma-separated list of table sizes, measures the same
with that many events already stored (another organization's month, filled in bulk first): the
scale curve of ingestion, e.g. `BENCH_USAGE_HISTORY=0,1000000,10000000`.
"""

import json
import os
import time
import uuid
from datetime import UTC, datetime

from _setup import setup_django

setup_django()

import psycopg  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

from billing import entitlements, metering  # noqa: E402
from billing.catalog import catalog_apply, load_catalog  # noqa: E402
from billing.models import Meter  # noqa: E402
from teams.models import Organization  # noqa: E402

ROUNDS = 3
EVENTS = {1: 2_000, 100: 20_000, 1000: 40_000}
BUDGET = 0.3

catalog_apply(load_catalog())
org, _ = Organization.objects.get_or_create(slug="bench-usage", defaults={"name": "bench usage"})
if not org.entitlement_grants.filter(feature__key="api_calls").exists():
    # A quota that never runs out, so every round takes the conditional (limited) path.
    entitlements.grant_create(organizations=[org], feature="api_calls", source="comp", amount=10**15)
entitlements.invalidate(org)
meter = Meter.objects.get(key="api_calls")
period = entitlements.effective_for(org).period(datetime.now(UTC))

with connection.cursor() as cursor:
    cursor.execute("TRUNCATE billing_usageevent, billing_usageday")
    cursor.execute("UPDATE billing_usagecounter SET used = 0 WHERE organization_id = %s", [org.pk])

db = settings.DATABASES["default"]
raw = psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"])


def events(n: int, run: str) -> list[dict]:
    at = datetime.now(UTC).isoformat()
    return [
        {"id": f"{run}-{i}", "meter": "api_calls", "value": 1, "timestamp": at, "properties": {"route": "/p"}}
        for i in range(n)
    ]


def baseline(batches: list[list[dict]]) -> None:
    now = datetime.now(UTC)
    with raw.cursor() as cursor:
        for batch in batches:
            rows = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, 'ingest')"] * len(batch))
            params = []
            for e in batch:
                params += [
                    org.pk,
                    meter.pk,
                    e["id"],
                    e["value"],
                    now,
                    period.start,
                    json.dumps(e["properties"]),
                    "",
                    now,
                ]
            cursor.execute(
                "INSERT INTO billing_usageevent (organization_id, meter_id, event_id, value, timestamp, "
                f"period_start, properties, dimension, received_at, source) VALUES {rows}",
                params,
            )
            raw.commit()


def ours(batches: list[list[dict]]) -> None:
    for batch in batches:
        result = metering.usage_ingest(organization=org, events=batch)
        assert result.accepted == len(batch), result.results[:3]


def rate(fn, size: int) -> float:
    """Events per second, best of ROUNDS, each round on fresh ids."""
    best = 0.0
    for _ in range(ROUNDS):
        run = uuid.uuid4().hex[:8]
        all_events = events(EVENTS[size], run)
        batches = [all_events[i : i + size] for i in range(0, len(all_events), size)]
        start = time.perf_counter()
        fn(batches)
        best = max(best, len(all_events) / (time.perf_counter() - start))
    return best


HISTORY = [int(n) for n in os.environ.get("BENCH_USAGE_HISTORY", "0").split(",")]


def history(rows: int) -> None:
    """Grow the table to `rows` events of another organization, as ingestion would store them."""
    other, _ = Organization.objects.get_or_create(slug="bench-usage-history", defaults={"name": "history"})
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM billing_usageevent WHERE organization_id = %s", [other.pk])
        have = cursor.fetchone()[0]
        if rows > have:
            cursor.execute(
                "INSERT INTO billing_usageevent (organization_id, source, meter_id, event_id, value, "
                "timestamp, period_start, properties, dimension, received_at) "
                "SELECT %s, 'ingest', %s, gen_random_uuid()::text, 1, ts, %s, '{}', '', ts "
                "FROM generate_series(1, %s) AS n, LATERAL (SELECT %s - n * interval '1 ms') AS t(ts)",
                [other.pk, meter.pk, period.start, rows - have, datetime.now(UTC)],
            )
            cursor.execute("ANALYZE billing_usageevent")


ours([events(1, "warm")[0:1]])
print(f"{'stored':>11} {'batch':>6} {'baseline ev/s':>14} {'usage_ingest ev/s':>18} {'ratio':>7}")
ratios = {}
for stored in HISTORY:
    history(stored)
    for size in EVENTS:
        base, mine = rate(baseline, size), rate(ours, size)
        ratios[stored, size] = mine / base
        print(f"{stored:>11,} {size:>6} {base:>14,.0f} {mine:>18,.0f} {ratios[stored, size]:>6.2f}x")
for stored in HISTORY:
    verdict = "met" if ratios[stored, 1000] >= BUDGET else "not met"
    print(f"budget {BUDGET:.1f}x for batches of 1,000 with {stored:,} events stored: {verdict}")
