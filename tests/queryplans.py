"""Whether statements reach the tables that grow through an index: their plans with sequential
scans priced out (`enable_seqscan = off`), so that a small test table is not scanned for its size
and a scan left in a plan means no index serves the statement."""

from django.db import connection, transaction

from config.tenancy import DISTRIBUTED, LOCAL, TENANCY

# Tables that grow with customers and time: the organizations' own, the global logs and queues,
# and dj-stripe's mirror of Stripe. The catalog and the people are small reference tables, read
# whole on purpose.
GROWING = [
    *sorted(
        table
        for table, (kind, _, _) in TENANCY.items()
        if kind in (DISTRIBUTED, LOCAL) and table != "django_migrations"
    ),
    *("djstripe_event", "djstripe_customer", "djstripe_subscription", "djstripe_invoice"),
]


def statements(captured) -> list[str]:
    """The reads and updates captured, each once. Prepared statements are left out: the credits'
    one-trip debit is explained by its own test (tests/credits/test_tenant_queries.py)."""
    seen = []
    for query in captured.captured_queries:
        for sql in query["sql"].split(";\n"):
            sql = sql.strip().rstrip(";")
            if sql.split(" ", 1)[0].upper() in ("SELECT", "UPDATE", "DELETE", "WITH") and sql not in seen:
                seen.append(sql)
    return seen


def scanning(sqls: list[str]) -> list[str]:
    """The statements (with their plans) that scan a whole growing table."""
    found = []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        for sql in sqls:
            cursor.execute("EXPLAIN " + sql)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            if any(f"Seq Scan on {table} " in plan + " " for table in GROWING):
                found.append(f"{sql}\n{plan}")
    return found
