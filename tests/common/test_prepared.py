"""Statements prepared once per connection (common/postgresql/prepared.py): they give what the
plain SQL gives, are planned once, and survive a session that lost them or a table that changed
shape under them. Outside a test transaction, as the debit that uses them runs."""

import uuid

import pytest
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext

from common.postgresql import prepared
from common.postgresql.prepared import Prepared
from credits import services
from credits.models import CreditTransaction
from credits.services import debits
from tests.credits.helpers import assert_reconciles

pytestmark = pytest.mark.django_db(transaction=True)


def _session_statements() -> dict[str, tuple[int, int]]:
    """This session's prepared statements, with how many of their calls ran on the one plan kept
    for every call (generic) and how many were planned for their own values (custom)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, generic_plans, custom_plans FROM pg_prepared_statements")
        return {name: (generic, custom) for name, generic, custom in cursor.fetchall()}


@pytest.fixture
def scratch():
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE scratch (id int PRIMARY KEY, note text)")
        cursor.execute("INSERT INTO scratch VALUES (1, 'one'), (2, 'two')")
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS scratch")
        cursor.execute("DEALLOCATE ALL")


def _run(statement: Prepared, **params):
    with connection.cursor() as cursor:
        statement.execute(cursor, params)
        rows = [cursor.fetchall()]
        while cursor.nextset():
            rows.append(cursor.fetchall())
    return rows


def test_it_gives_what_the_plain_statements_give_and_is_prepared_once(scratch):
    statement = Prepared(
        "SELECT note, %(n)s %% 3 FROM scratch WHERE id = %(id)s",
        "SELECT count(*) + %(n)s FROM scratch",
    )
    assert _run(statement, id=2, n=7) == [[("two", 1)], [(9,)]]
    assert _run(statement, id=1, n=8) == [[("one", 2)], [(10,)]]
    prepared = _session_statements()
    assert statement.names <= prepared.keys()
    with connection.cursor() as cursor:
        cursor.execute(statement.plain, {"id": 1, "n": 8})
        assert cursor.fetchall() == [("one", 2)]


def test_a_failure_in_the_second_statement_undoes_the_first(scratch):
    statement = Prepared(
        "UPDATE scratch SET note = %(note)s WHERE id = 1", "SELECT 1 / (count(*) - 2) FROM scratch"
    )
    with pytest.raises(DatabaseError):
        _run(statement, note="changed")
    assert _run(Prepared("SELECT note FROM scratch WHERE id = 1")) == [[("one",)]]


def test_a_session_that_lost_its_statements_runs_them_plain_then_prepares_again(scratch):
    # What a pooler's reset of a server session (DISCARD ALL) leaves behind.
    statement = Prepared("SELECT note FROM scratch WHERE id = %(id)s")
    assert _run(statement, id=1) == [[("one",)]]
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    assert _run(statement, id=2) == [[("two",)]]
    assert _run(statement, id=1) == [[("one",)]]
    assert statement.names <= _session_statements().keys()


def _verbs(statement: Prepared, **params) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        _run(statement, **params)
    return [query["sql"].split()[0] for query in captured]


def test_a_session_that_keeps_losing_them_stops_preparing(scratch):
    # A pooler in transaction mode: the next transaction may run on another server session.
    statement = Prepared("SELECT note FROM scratch WHERE id = %(id)s")
    for _ in range(prepared.GIVE_UP_AFTER):
        assert _verbs(statement, id=1)[-1] == "EXECUTE"
        with connection.cursor() as cursor:
            cursor.execute("DEALLOCATE ALL")
        assert _verbs(statement, id=1) == ["EXECUTE", "SELECT"]  # lost: run plain
    assert _verbs(statement, id=2) == ["SELECT"]
    assert _run(statement, id=2) == [[("two",)]]


def test_nothing_is_prepared_where_the_settings_say_a_pooler_is_in_front(scratch):
    statement = Prepared("SELECT note FROM scratch WHERE id = %(id)s")
    connection.settings_dict["DISABLE_SERVER_SIDE_CURSORS"] = True
    try:
        assert _verbs(statement, id=1) == ["SELECT"]
    finally:
        connection.settings_dict["DISABLE_SERVER_SIDE_CURSORS"] = False


def test_a_table_that_changed_shape_under_a_plan_is_read_afresh(scratch):
    statement = Prepared("SELECT * FROM scratch WHERE id = %(id)s")
    assert _run(statement, id=1) == [[(1, "one")]]
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE scratch ADD COLUMN extra int DEFAULT 5")
    assert _run(statement, id=1) == [[(1, "one", 5)]]
    assert _run(statement, id=2) == [[(2, "two", 5)]]


def test_a_statement_that_another_session_prepared_under_its_name_is_used(scratch):
    statement = Prepared("SELECT note FROM scratch WHERE id = %(id)s")
    (name,) = statement.names
    with connection.cursor() as cursor:
        cursor.execute(f"PREPARE {name} AS SELECT note FROM scratch WHERE id = $1")  # noqa: S608
    assert _run(statement, id=2) == [[("two",)]]


@pytest.fixture(autouse=True)
def _no_welcome_bonus(settings):
    settings.CREDITS_WELCOME_BONUS = 0


def _fund(org, amount: int) -> None:
    services.credits_grant(organization=org, amount=amount, source="purchase", idempotency_key="fund")


def test_the_debit_is_planned_once_per_connection_not_once_per_call(org):
    _fund(org, 1_000)
    for n in range(12):
        services.credits_consume(organization=org, amount=3, idempotency_key=f"k{n}")
    planned = _session_statements()
    assert debits._ONE_TRIP.names <= planned.keys()
    # PostgreSQL plans a prepared statement's first five calls for their own values, then keeps
    # one plan for the calls after: at most six plannings for twelve calls.
    for name in debits._ONE_TRIP.names:
        generic, custom = planned[name]
        assert generic + custom == 12 and custom <= 5 and generic >= 1, planned[name]
    assert CreditTransaction.objects.filter(type="consumption").count() == 12
    assert_reconciles()


def test_a_debit_on_a_session_that_lost_its_statements_is_made_exactly_once(org):
    _fund(org, 100)
    services.credits_consume(organization=org, amount=10, idempotency_key="before")
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    key = str(uuid.uuid4())
    entry = services.credits_consume(organization=org, amount=10, idempotency_key=key)
    again = services.credits_consume(organization=org, amount=10, idempotency_key=key)
    assert again.pk == entry.pk and entry.balance_after == 80
    assert CreditTransaction.objects.filter(type="consumption").count() == 2
    assert_reconciles()
