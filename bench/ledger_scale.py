"""A ledger of a million consumptions in 30 days: what it stores, and how fast its page stays.

One organization gets BENCH_LEDGER_ROWS consumptions (default 1,000,000), written with SQL in the
shape the debit writes them (a ledger line naming the one grant it drew from, its day in the
rollup; `shape_check` makes a real consumption first and stops if it writes anything else),
spread over the last 30 days, with the indexes the models declare. Figures:
- storage per million consumptions: the growth of the ledger, allocation and rollup tables with
  their indexes (and TOAST), scaled to 1,000,000. Budget: at most 300 MB.
- the credits page: p50 of the warm page for that organization, in alternating rounds with the
  same page for an organization whose ledger is empty (the baseline), through Django's test
  client. Budget: p50 at most 60 ms, and the ratio says what the rows cost.
The usage events' tables are not measured here (their schema is changing elsewhere).
"""

import os
import time

from _setup import alternating_p50, setup_django, storage_print, storage_size

setup_django()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import reverse  # noqa: E402

from credits import services  # noqa: E402
from credits.models import (  # noqa: E402
    CreditAccount,
    CreditAllocation,
    CreditGrant,
    CreditTransaction,
    CreditUsageDay,
)
from teams.models import Membership, Organization, Role, User  # noqa: E402

ROWS = int(os.environ.get("BENCH_LEDGER_ROWS", "1000000"))
ROUNDS = 7
TABLES = [m._meta.db_table for m in (CreditTransaction, CreditAllocation, CreditUsageDay)]


def organization(slug: str, user: User) -> Organization:
    org, _ = Organization.objects.get_or_create(slug=slug, defaults={"name": slug})
    Membership.objects.get_or_create(organization=org, user=user, defaults={"role": Role.OWNER})
    return org


def fill(org: Organization) -> None:
    account = services.credit_account_for(organization=org)
    CreditAllocation.objects.filter(organization=org).delete()
    CreditTransaction.objects.filter(organization=org).delete()
    CreditUsageDay.objects.filter(organization=org).delete()
    CreditGrant.objects.filter(organization=org).delete()
    CreditAccount.objects.filter(pk=account.pk).update(balance=0, lifetime_used=0, lifetime_purchased=0)
    services.credits_grant(
        organization=org, amount=10 * ROWS, source="purchase", idempotency_key="bench-scale"
    )
    grant = CreditGrant.objects.get(organization=org)
    with connection.cursor() as cursor:
        # What the debit writes for each consumption (credits/services.py, _DEBIT_SQL), in bulk.
        cursor.execute(
            """
            WITH entries AS (
                INSERT INTO credits_credittransaction (code, organization_id, account_id, type, amount,
                    balance_after, action, quantity, description, reference_type, reference_id,
                    idempotency_key, metadata, created_at, grant_id)
                SELECT gen_random_uuid(), %(org)s, %(account)s, 'consumption', -(1 + n %% 3), %(balance)s - n,
                       (ARRAY['', 'image', 'chat'])[1 + n %% 3], NULL, '', '', '', gen_random_uuid()::text,
                       '{}', now() - (n::float / %(rows)s) * interval '30 days', %(grant)s
                FROM generate_series(1, %(rows)s) AS n
                RETURNING id, amount, action, created_at
            )
            INSERT INTO credits_creditusageday (organization_id, account_id, day, action, credits,
                consumptions)
            SELECT %(org)s, %(account)s, (created_at AT TIME ZONE 'UTC')::date, action, -SUM(amount), COUNT(*)
            FROM entries GROUP BY 3, 4
            """,
            {"org": org.pk, "account": account.pk, "balance": 10 * ROWS, "rows": ROWS, "grant": grant.pk},
        )
        cursor.execute("ANALYZE credits_credittransaction, credits_creditallocation, credits_creditusageday")


def shape_check(org: Organization) -> None:
    """The rows one real consumption from one grant writes, against those `fill` writes."""
    counts = [m.objects.filter(organization=org).count() for m in (CreditTransaction, CreditAllocation)]
    entry = services.credits_consume(organization=org, amount=1, idempotency_key="bench-shape")
    after = [m.objects.filter(organization=org).count() for m in (CreditTransaction, CreditAllocation)]
    grant = CreditGrant.objects.get(organization=org)
    if (after[0] - counts[0], after[1] - counts[1], entry.grant_id) != (1, 0, grant.pk):
        raise SystemExit("a consumption no longer writes what fill() writes: update fill()")


def main() -> None:
    settings.CREDITS_WELCOME_BONUS = 0
    user, _ = User.objects.get_or_create(email="bench-scale@example.com")
    big, empty = organization("bench-scale-big", user), organization("bench-scale-empty", user)
    services.credit_account_for(organization=empty)
    before = storage_size(TABLES)
    started = time.perf_counter()
    fill(big)
    shape_check(big)
    grown = storage_size(TABLES) - before
    print(f"filled {ROWS:,} consumptions in {time.perf_counter() - started:.0f} s")
    per_million = grown * 1_000_000 / ROWS / 2**20
    storage_print(TABLES)

    client = Client(SERVER_NAME="127.0.0.1")
    client.force_login(user)
    urls = {org: reverse("credits", args=[org.slug]) for org in (big, empty)}
    base, mine, ratio = alternating_p50(client, urls[empty], urls[big], ROUNDS)
    print(f"credits page p50: empty ledger {base * 1000:.1f} ms, {ROWS:,} consumptions {mine * 1000:.1f} ms")
    print(f"load average: {os.getloadavg()[0]:.2f}")
    print("budgets:")
    verdict = "met" if per_million <= 300 else "not met"
    print(f"  storage per million consumptions <= 300 MB: {per_million:.0f} MB {verdict}")
    print(
        f"  credits page p50 with {ROWS:,} consumptions in 30 days <= 60 ms: {mine * 1000:.1f} ms "
        f"({ratio:.2f}x the empty ledger's) {'met' if mine <= 0.060 else 'not met'}"
    )


main()
