"""Unique keys indexed by a 16-byte digest instead of the text they are made of.

Idempotency keys and event ids are what clients send: 36-character UUIDs or longer, in random
order. A unique index of (organization, key) holds each key in full; one of
`tally_digest(organization, key)`, the first 16 bytes of SHA-256 of the parts joined by ':', as a
uuid, takes a third to a half of the space (bench/RESULTS.md). Only the last part may hold a ':'
(the others are an id and a fixed word), so two different keys never join to the same text. Two
different keys with the same digest would make the second a duplicate: with 128 bits, a trillion
keys in one table have about one chance in 10^15 of that ever happening once, and nobody knows
how to make it happen.

`Digest(*fields)` is the expression an index holds; `matching(queryset, **values)` finds a row
by its parts through that index (the database computes the same digest of the values). The
offline demo's SQLite has no SHA-256: there the index holds the joined parts themselves.
"""

from django.db import models

FUNCTIONS = [
    # Immutable in fact: a database's encoding never changes, so a text's UTF-8 bytes never do.
    """
    CREATE OR REPLACE FUNCTION tally_digest(bigint, text) RETURNS uuid
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT encode(substring(sha256(convert_to($1::text || ':' || $2, 'UTF8')) FROM 1 FOR 16), 'hex')
        ::uuid
    $$
    """,
    """
    CREATE OR REPLACE FUNCTION tally_digest(bigint, text, text) RETURNS uuid
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT encode(substring(sha256(convert_to($1::text || ':' || $2 || ':' || $3, 'UTF8')) FROM 1 FOR 16),
        'hex')::uuid
    $$
    """,
]


class Digest(models.Func):
    function = "tally_digest"
    output_field = models.UUIDField()

    def __init__(self, *expressions, **extra):
        if len(expressions) not in (2, 3):
            raise TypeError("tally_digest takes an organization and one or two texts")
        super().__init__(*expressions, **extra)

    def as_sqlite(self, compiler, connection, **extra_context):
        return self.as_sql(
            compiler, connection, template="(%(expressions)s)", arg_joiner=" || ':' || ", **extra_context
        )


def matching(queryset: models.QuerySet, **values) -> models.QuerySet:
    """The rows whose fields equal `values`, looked up through the index of their `Digest`
    (the fields in the order the index names them)."""
    given = Digest(*(models.Value(value) for value in values.values()))
    return queryset.alias(_digest=Digest(*values)).filter(_digest=given, **values)


def create_functions(apps, schema_editor) -> None:
    """For a migration's RunPython (its reverse leaves them: other indexes may use them)."""
    if schema_editor.connection.vendor == "postgresql":
        for sql in FUNCTIONS:
            schema_editor.execute(sql)
