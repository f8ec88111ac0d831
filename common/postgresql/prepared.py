"""Hot statements that PostgreSQL parses and plans once per connection instead of on every call.

The debit is a long statement of several parts; parsing and planning it took about as long as
running it (bench/RESULTS.md). A `Prepared` is written like any other SQL, with `%(name)s`
placeholders, as one or more statements that travel in one message (one implicit transaction).
On its first use on a connection each statement is sent once as `PREPARE`; afterwards a call is
one message of `EXECUTE`s, whose arguments are bound client-side as before.

A session can lose its prepared statements without Django noticing: a pooler that resets server
sessions (`DISCARD ALL`) or hands the next transaction another one. Such a call fails whole
(the `EXECUTE`s are one transaction), changing nothing; it is run once more as plain SQL and the
connection prepares again on its next call. The names are digests of the text, so two releases
sharing sessions during a rolling upgrade never run each other's statements. A session that keeps
losing them (a pooler in transaction mode, which gives each transaction whichever server session
is free) stops preparing after `GIVE_UP_AFTER` losses and runs plain SQL from then on, as every
session does where `DISABLE_SERVER_SIDE_CURSORS` says such a pooler is in front (Django's own
setting for it).

Only for autocommit: inside a transaction the failed `EXECUTE` would abort it.
"""

import contextlib
import hashlib
import re
import weakref

from django.db import DatabaseError, ProgrammingError
from django.db.backends.postgresql.psycopg_any import is_psycopg3

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
# SQLSTATEs of a statement the session does not have (26000), of one it has already (42P05),
# and of a cached plan whose tables changed shape under it (0A000).
_MISSING, _DUPLICATE, _STALE = "26000", "42P05", "0A000"

GIVE_UP_AFTER = 3


def one_message_possible(connection) -> bool:
    """Whether statements may travel in one message, run by PostgreSQL as one implicit
    transaction: only in autocommit (nothing else written in the transaction yet), with psycopg 3
    binding parameters client-side (psycopg 2 returns only the last statement's rows, and
    server-side binding refuses two statements in one message)."""
    return (
        connection.vendor == "postgresql"
        and is_psycopg3
        and not connection.in_atomic_block
        and not connection.settings_dict.get("OPTIONS", {}).get("server_side_binding")
    )


class _Session:
    def __init__(self) -> None:
        self.prepared: set[str] = set()
        self.lost = 0


# What each open connection has prepared, forgotten with the connection.
_sessions: "weakref.WeakKeyDictionary[object, _Session]" = weakref.WeakKeyDictionary()


def _sqlstate(error: DatabaseError) -> str | None:
    return getattr(error.__cause__, "sqlstate", None)


class Prepared:
    def __init__(self, *statements: str) -> None:
        self.plain = ";".join(statements)
        self._prepare: list[str] = []
        calls = []
        for statement in statements:
            name = "tally_" + hashlib.sha256(statement.encode()).hexdigest()[:16]
            order: list[str] = []

            def positional(match, order=order):
                if match.group(1) not in order:
                    order.append(match.group(1))
                return f"${order.index(match.group(1)) + 1}"

            # Sent without parameters, so `%%` is unescaped here and nothing else is read as one.
            body = _PLACEHOLDER.sub(positional, statement).replace("%%", "%")
            self._prepare.append(f"PREPARE {name} AS {body}")
            arguments = ", ".join(f"%({n})s" for n in order)
            calls.append(f"EXECUTE {name}({arguments})" if order else f"EXECUTE {name}")
        self.call = ";\n".join(calls)
        self.names = frozenset(s.split()[1] for s in self._prepare)

    def execute(self, cursor, params: dict) -> None:
        """Run the statements with `params` on `cursor` (Django's); read the results from it."""
        session = _sessions.setdefault(cursor.cursor.connection, _Session())
        if session.lost >= GIVE_UP_AFTER or cursor.db.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS"):
            cursor.execute(self.plain, params)
            return
        if not self.names <= session.prepared:
            for prepare in self._prepare:
                try:
                    cursor.execute(prepare)
                except ProgrammingError as error:
                    if _sqlstate(error) != _DUPLICATE:
                        raise
            session.prepared.update(self.names)
        try:
            cursor.execute(self.call, params)
        except DatabaseError as error:
            if _sqlstate(error) not in (_MISSING, _STALE):
                raise
            session.prepared.difference_update(self.names)
            if _sqlstate(error) == _MISSING:
                session.lost += 1
            else:
                for name in self.names:
                    with contextlib.suppress(ProgrammingError):  # one never prepared here
                        cursor.execute(f"DEALLOCATE {name}")
            cursor.execute(self.plain, params)
