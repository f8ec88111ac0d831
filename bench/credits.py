"""Consuming credits: `credits_consume` against the bare SQL it cannot do without.

Baseline: the same conditional UPDATE of the account and INSERT of the ledger line, committed
one by one from a bare psycopg connection per worker (no Django, no grants, no idempotency
handling): four round trips with BEGIN and COMMIT. Ours: `credits_consume`, which also draws
from grants (naming the grant on the line, or writing allocations) and adds the consumption to
its day, in one round trip (see `_ONE_TRIP`).
Both run in the same process, on the same database, for one hot account (every worker on the
same row) and for 1,000 accounts (workers spread out), with 1 and 8 worker threads.
Last, the HTTP endpoint through Django's test client: requests per second.
`BENCH_CREDITS_ACCOUNTS` (default "1000"), a comma-separated list, spreads the workers over that
many accounts instead: the scale curve, e.g. `BENCH_CREDITS_ACCOUNTS=100,10000`.

The benchmark database is a throwaway: the baseline's ledger lines draw on no grant, so its
accounts do not reconcile, and every run starts by deleting the previous run's rows.
"""

import itertools
import os
import random
import statistics
import threading
import time
import uuid

from _setup import setup_django

setup_django()

import psycopg  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

from credits import services  # noqa: E402
from credits.models import CreditAccount  # noqa: E402
from teams import api_keys  # noqa: E402
from teams.models import Organization, User  # noqa: E402

OPS = 2000  # consumptions per round, split between the workers
ROUNDS = 5
ACCOUNTS = [int(n) for n in os.environ.get("BENCH_CREDITS_ACCOUNTS", "1000").split(",")]
BUDGET = 0.8

UPDATE = (
    "UPDATE credits_creditaccount SET balance = balance - 1, lifetime_used = lifetime_used + 1 "
    "WHERE id = %s AND balance - held - 1 >= -overdraft_allowance RETURNING balance, organization_id"
)
INSERT = (
    "INSERT INTO credits_credittransaction (code, organization_id, account_id, type, amount, "
    "balance_after, action, quantity, description, reference_type, reference_id, idempotency_key, "
    "metadata, created_at) "
    "VALUES (%s, %s, %s, 'consumption', -1, %s, '', NULL, '', '', '', %s, '{}', now())"
)


def reset() -> list[Organization]:
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE credits_creditallocation, credits_credittransaction, credits_creditreservation, "
            "credits_creditrecharge, credits_creditgrant, credits_creditaccount CASCADE"
        )
    settings.CREDITS_WELCOME_BONUS = 0
    user, _ = User.objects.get_or_create(email="bench-credits@example.com")
    have = list(Organization.objects.filter(slug__startswith="bench-credits-").order_by("pk"))
    for i in range(len(have), max(ACCOUNTS)):
        have.append(Organization.objects.create(name=f"bench credits {i}", slug=f"bench-credits-{i}"))
    for org in have:
        services.credits_grant(organization=org, amount=10**9, source="purchase", idempotency_key="bench")
    return have


def run(workers: int, work) -> float:
    """Consumptions per second with `workers` threads sharing OPS operations."""
    per = OPS // workers
    barrier = threading.Barrier(workers + 1)

    def target(n):
        barrier.wait()
        work(n, per)

    threads = [threading.Thread(target=target, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return per * workers / max(time.perf_counter() - start, 1e-9)


def raw_work(account_ids):
    db = settings.DATABASES["default"]
    dsn = f"host={db['HOST']} port={db['PORT']} user={db['USER']} dbname={db['NAME']}"

    def work(n, count):
        pick = random.Random(n).choice
        with psycopg.connect(dsn) as conn:
            for _ in range(count):
                account_id = pick(account_ids)
                balance, organization_id = conn.execute(UPDATE, [account_id]).fetchone()
                conn.execute(
                    INSERT, [uuid.uuid4(), organization_id, account_id, balance, f"raw-{uuid.uuid4()}"]
                )
                conn.commit()

    return work


def ours_work(orgs):
    def work(n, count):
        pick = random.Random(n).choice
        try:
            for _ in range(count):
                services.credits_consume(organization=pick(orgs), amount=1, idempotency_key=str(uuid.uuid4()))
        finally:
            connection.close()

    return work


def http_rps(org, n: int = 1000) -> float:
    from rest_framework.test import APIClient

    from billing import entitlements
    from billing.catalog.apply import catalog_apply
    from billing.catalog.spec import load_catalog
    from billing.models import Plan

    # Measures the endpoint, not the rate limit: an unlimited plan (still one limiter call each).
    catalog_apply(load_catalog())
    entitlements.subscription_set(organization=org, plan=Plan.objects.get(key="enterprise"), status="active")
    entitlements.invalidate(org)

    _, secret = api_keys.api_key_create(
        organization=org, actor=User.objects.get(email="bench-credits@example.com"), name="bench"
    )
    client = APIClient(SERVER_NAME="127.0.0.1")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    counter = itertools.count()

    def call():
        response = client.post(
            "/api/v1/credits/consume",
            {"amount": 1},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"http-{next(counter)}",
        )
        assert response.status_code == 201, response.content

    for _ in range(50):
        call()
    start = time.perf_counter()
    for _ in range(n):
        call()
    return n / (time.perf_counter() - start)


def main() -> None:
    orgs = reset()
    ids = dict(CreditAccount.objects.values_list("organization_id", "pk"))
    hot = [orgs[0]]
    print(f"{'accounts':>8} {'workers':>7} {'raw ops/s':>10} {'ours ops/s':>11} {'ratio':>6}")
    budgets = []
    for label, chosen in [("1", hot)] + [(f"{n:,}", orgs[:n]) for n in ACCOUNTS]:
        account_ids = [ids[o.pk] for o in chosen]
        for workers in (1, 8):
            # Alternate the two and compare each round with its neighbour: load from elsewhere on
            # the machine then weighs on both sides of a ratio, and the median drops outliers.
            pairs = [
                (run(workers, raw_work(account_ids)), run(workers, ours_work(chosen))) for _ in range(ROUNDS)
            ]
            raw = statistics.median(r for r, _ in pairs)
            ours = statistics.median(o for _, o in pairs)
            ratio = statistics.median(o / r for r, o in pairs)
            print(f"{label:>8} {workers:>7} {raw:>10.0f} {ours:>11.0f} {ratio:>5.2f}x")
            verdict = "met" if ratio >= BUDGET else "not met"
            budgets.append(
                f"in-process consume, {label} accounts, {workers} workers >= {BUDGET}x raw: "
                f"{ratio:.2f}x {verdict}"
            )
    print(f"HTTP POST /api/v1/credits/consume (test client, 1 worker): {http_rps(orgs[1]):.0f} requests/s")
    print("budgets:")
    for line in budgets:
        print("  " + line)


main()
