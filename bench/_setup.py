"""Shared set-up for benchmarks: Django on a dedicated PostgreSQL database, migrated once."""

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tally_bench")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")


def setup_django() -> None:
    import django
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    admin = f"host={db['HOST']} port={db['PORT']} user={db['USER']} dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", [db["NAME"]]).fetchone()
        if not exists:
            conn.execute(f'create database "{db["NAME"]}"')
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def timed(fn, n: int) -> float:
    """Seconds per call, best of three rounds, after a warm-up."""
    for _ in range(min(n, 100)):
        fn()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best


def page_p50(client, url: str, requests: int = 10) -> float:
    """Seconds, the median of `requests` GETs of a page that must answer 200."""
    import statistics

    times = []
    for _ in range(requests):
        start = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - start)
        assert response.status_code == 200, response.status_code
    return statistics.median(times)


def alternating_p50(client, baseline: str, measured: str, rounds: int = 7) -> tuple[float, float, float]:
    """(baseline p50, measured p50, median ratio) over alternating rounds, after a warm-up."""
    import statistics

    page_p50(client, baseline)
    page_p50(client, measured)
    pairs = [(page_p50(client, baseline), page_p50(client, measured)) for _ in range(rounds)]
    ratio = statistics.median(m / b for b, m in pairs)
    return statistics.median(b for b, _ in pairs), statistics.median(m for _, m in pairs), ratio


def storage_size(tables: list[str]) -> int:
    """Bytes of these tables with their indexes (and TOAST)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT SUM(pg_total_relation_size(c)) FROM unnest(%s::regclass[]) AS c", [tables])
        return int(cursor.fetchone()[0])


def storage_print(tables: list[str]) -> None:
    """Each table's size, then each of its indexes', largest first."""
    from django.db import connection

    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute("SELECT pg_relation_size(%s), pg_indexes_size(%s)", [table, table])
            heap, index_total = cursor.fetchone()
            print(f"  {table:<28} table {heap / 2**20:8.1f} MB  indexes {index_total / 2**20:8.1f} MB")
            cursor.execute(
                "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index "
                "WHERE indrelid = %s::regclass ORDER BY 2 DESC",
                [table],
            )
            for name, size in cursor.fetchall():
                print(f"    {name:<44} {size / 2**20:8.1f} MB")
