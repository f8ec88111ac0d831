"""A million usage events in the current period: what they store, and how fast the usage page stays.

One organization on Enterprise (every meter included), whose period started 29 days ago, gets
BENCH_USAGE_ROWS events (default 1,000,000) spread over those 29 days and over the five meters
of the catalog (half API calls, a fifth AI generations, a fifth unique-count active users among
20,000 people, the rest peak connections and storage readings), written with SQL in the shape
ingestion writes them, and their days recomputed from them as ingestion keeps them. Figures:
- storage per million events: the growth of the event and day tables with their indexes (and
  TOAST), scaled to 1,000,000, each index's size beside it. Budget: at most 220 MB.
- the usage page: p50 of the warm page for that organization, in alternating rounds with the
  same page for an organization with no events (the baseline), through Django's test client.
  Budget: p50 at most 60 ms; the ratio says what the rows cost.
"""

import os
import time
from datetime import timedelta

from _setup import alternating_p50, setup_django, storage_print, storage_size

setup_django()

from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import reverse  # noqa: E402
from django.utils import timezone  # noqa: E402

from billing import entitlements  # noqa: E402
from billing.catalog import catalog_apply, load_catalog  # noqa: E402
from billing.metering.days import _RECOMPUTE  # noqa: E402
from billing.models import Meter, Plan, SubscriptionStatus, UsageDay, UsageEvent  # noqa: E402
from teams.models import Membership, Organization, Role, User  # noqa: E402

ROWS = int(os.environ.get("BENCH_USAGE_ROWS", "1000000"))
ROUNDS = 7
TABLES = [UsageEvent._meta.db_table, UsageDay._meta.db_table]


def organization(slug: str, user: User, period_start) -> Organization:
    org, _ = Organization.objects.get_or_create(slug=slug, defaults={"name": slug})
    Membership.objects.get_or_create(organization=org, user=user, defaults={"role": Role.OWNER})
    entitlements.subscription_set(
        organization=org,
        plan=Plan.objects.get(key="enterprise"),
        status=SubscriptionStatus.ACTIVE,
        billing_cycle_anchor=period_start,
        current_period_start=period_start,
        current_period_end=period_start + timedelta(days=31),
    )
    entitlements.invalidate(org)
    return org


def fill(org: Organization, period_start) -> None:
    UsageDay.objects.filter(organization=org).delete()
    UsageEvent.objects.filter(organization=org).delete()
    meters = {m.key: m.pk for m in Meter.objects.all()}
    seconds = (timezone.now() - period_start).total_seconds() - 60
    with connection.cursor() as cursor:
        # What `usage_ingest` stores for each event (billing/metering/ingest.py, `_insert`), in bulk.
        cursor.execute(
            """
            INSERT INTO billing_usageevent (organization_id, source, meter_id, event_id, value,
                timestamp, period_start, properties, dimension, received_at)
            SELECT %(org)s, 'ingest',
                CASE WHEN n %% 10 < 5 THEN %(calls)s WHEN n %% 10 < 7 THEN %(gens)s
                    WHEN n %% 10 < 9 THEN %(users)s WHEN n %% 20 = 9 THEN %(peak)s ELSE %(storage)s END,
                gen_random_uuid()::text, 1 + n %% 7, ts, %(start)s,
                CASE WHEN n %% 10 IN (7, 8) THEN jsonb_build_object('user_id', 'user' || (n %% 20000))
                    ELSE '{}'::jsonb END,
                CASE WHEN n %% 10 IN (7, 8) THEN 'user' || (n %% 20000) ELSE '' END, ts
            FROM generate_series(1, %(rows)s) AS n, LATERAL (
                SELECT %(start)s + (n::float / %(rows)s) * %(seconds)s * interval '1 second'
            ) AS t(ts)
            """,
            {
                "org": org.pk,
                "rows": ROWS,
                "start": period_start,
                "seconds": seconds,
                "calls": meters["api_calls"],
                "gens": meters["ai_generations"],
                "users": meters["active_users"],
                "peak": meters["peak_connections"],
                "storage": meters["storage_gb"],
            },
        )
        recompute = _RECOMPUTE.format(event=UsageEvent._meta.db_table, meter=Meter._meta.db_table)
        cursor.execute(
            "INSERT INTO billing_usageday (organization_id, meter_id, feature_id, period_start, day, "
            "total, events, peak, last_at, last_event, last_value, distinct_new) "
            f"SELECT %(org)s, * FROM ({recompute}) AS days",
            {"org": org.pk},
        )
        cursor.execute("ANALYZE billing_usageevent, billing_usageday")


def main() -> None:
    with connection.cursor() as cursor:  # the benchmark database is a throwaway: every run starts empty
        cursor.execute("TRUNCATE billing_usageevent, billing_usageday")
    catalog_apply(load_catalog())
    user, _ = User.objects.get_or_create(email="bench-usage-scale@example.com")
    period_start = (timezone.now() - timedelta(days=29)).replace(microsecond=0)
    big = organization("bench-usage-big", user, period_start)
    empty = organization("bench-usage-empty", user, period_start)
    before = storage_size(TABLES)
    started = time.perf_counter()
    fill(big, period_start)
    grown = storage_size(TABLES) - before
    print(f"filled {ROWS:,} usage events over 29 days in {time.perf_counter() - started:.0f} s")
    per_million = grown * 1_000_000 / ROWS / 2**20
    storage_print(TABLES)

    client = Client(SERVER_NAME="127.0.0.1")
    client.force_login(user)
    urls = {org: reverse("usage", args=[org.slug]) for org in (big, empty)}
    base, mine, ratio = alternating_p50(client, urls[empty], urls[big], ROUNDS)
    print(f"usage page p50: no events {base * 1000:.1f} ms, {ROWS:,} events {mine * 1000:.1f} ms")
    print(f"load average: {os.getloadavg()[0]:.2f}")
    print("budgets:")
    verdict = "met" if per_million <= 220 else "not met"
    print(f"  storage per million usage events <= 220 MB: {per_million:.0f} MB {verdict}")
    print(
        f"  usage page p50 with {ROWS:,} events in the period <= 60 ms: {mine * 1000:.1f} ms "
        f"({ratio:.2f}x the empty organization's) {'met' if mine <= 0.060 else 'not met'}"
    )


main()
