"""The hot paths of credits name the organization in every read and write of a distributed
table (so that, sharded by organization, each runs on one node), and an index serves each of
them: with sequential scans priced out, no plan scans a whole distributed table."""

import re

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from config.tenancy import DISTRIBUTED, TENANCY
from credits import selectors, services
from projects import selectors as project_selectors
from tests.factories import GenerationFactory, ProjectFactory

# Teams' tables are left out, and so are reads that start from them: a request first finds the
# organizations of the person signed in (a membership by user and slug), before there is an
# organization to name.
TABLES = sorted(
    t
    for t, (kind, column, _) in TENANCY.items()
    if kind == DISTRIBUTED and column == "organization_id" and not t.startswith("teams_")
)
_NAMED = re.compile(r'(?:FROM|JOIN|UPDATE|INTO)\s+"?(' + "|".join(TABLES) + r')"?\b')
_BY_ORG = re.compile(r'organization_id"?\s*(?:=|IN\b)')
_FIRST_FROM = re.compile(r'^SELECT\b.*?\bFROM\s+"?(\w+)', re.DOTALL)


def _prepared() -> dict[str, str]:
    """The statements this session has prepared (common/postgresql/prepared.py), by name."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, statement FROM pg_prepared_statements")
        return {name: statement.split(" AS ", 1)[1].strip() for name, statement in cursor.fetchall()}


def _text(sql: str, prepared: dict[str, str]) -> str:
    """A statement's own text; for the EXECUTE of a prepared one, what was prepared."""
    if sql.startswith("EXECUTE "):
        return prepared[sql.split()[1].split("(")[0]]
    return sql


def _statements(captured) -> list[str]:
    """Each read or update of a distributed table (inserts carry the column by construction);
    the one-trip debit's two statements apart, each prepared one as its EXECUTE."""
    prepared = _prepared()
    out = []
    for query in captured.captured_queries:
        if query["sql"].startswith("PREPARE "):
            continue
        for sql in query["sql"].split(";\n"):
            sql = sql.strip().rstrip(";")
            text = _text(sql, prepared)
            first = _FIRST_FROM.match(text)
            if first and first.group(1).startswith("teams_"):
                continue
            verb = text.split(" ", 1)[0].upper()
            if verb in ("SELECT", "UPDATE", "DELETE", "WITH") and _NAMED.search(text):
                out.append(sql)
    return out


def _unfiltered(statements: list[str]) -> list[str]:
    prepared = _prepared()
    return [sql for sql in statements if not _BY_ORG.search(_text(sql, prepared).split(" WHERE ", 1)[-1])]


def _scanned(statements: list[str]) -> list[str]:
    """Statements whose plan reads a whole distributed table even with sequential scans priced
    out; a prepared one planned afresh for its values, not by the plan it keeps."""
    found = []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        for sql in statements:
            cursor.execute("EXPLAIN " + sql)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            if any(f"Seq Scan on {table}" in plan for table in TABLES):
                found.append(f"{sql}\n{plan}")
    return found


def _hot_paths(org, owner, client) -> list[str]:
    """The debit (one round trip, outside a transaction), a hold confirmed and one cancelled,
    a refund, and the credits page with its aggregates."""
    with CaptureQueriesContext(connection) as captured:
        services.credits_consume(organization=org, amount=30, idempotency_key="hot-1")
        services.credits_consume(organization=org, amount=30, idempotency_key="hot-1")  # a replay
        held = services.credit_reservation_create(organization=org, amount=50, idempotency_key="hold-1")
        services.credit_reservation_confirm(reservation=held, amount=20)
        other = services.credit_reservation_create(organization=org, amount=10, idempotency_key="hold-2")
        services.credit_reservation_cancel(reservation=other)
        account = services.credit_account_for(organization=org)
        selectors.usage_overview(account)
        list(selectors.transactions_of(account)[:50])
        client.force_login(owner)
        assert client.get(reverse("credits", args=[org.slug])).status_code == 200
    return _statements(captured)


@pytest.mark.django_db(transaction=True)
def test_the_hot_paths_filter_by_the_organization_and_use_an_index(org, owner, client):
    services.credits_grant(organization=org, amount=1000, source="purchase", idempotency_key="fund")
    statements = _hot_paths(org, owner, client)
    prepared = _prepared()
    # The one-trip debit ran, prepared, and so did the statement of the transactional path.
    assert any(sql.startswith("EXECUTE") and "WITH moved AS" in _text(sql, prepared) for sql in statements)
    assert any(sql.startswith("WITH moved AS") for sql in statements)
    assert _unfiltered(statements) == []
    assert _scanned(statements) == []


@pytest.mark.django_db
def test_a_project_lists_its_generations_by_the_organization(org):
    project = ProjectFactory(organization=org)
    GenerationFactory(project=project)
    with CaptureQueriesContext(connection) as captured:
        list(project_selectors.generations_of(project))
    statements = _statements(captured)
    assert statements and _unfiltered(statements) == []
    assert _scanned(statements) == []
