"""Migration operations that change big tables without stopping their writes, on PostgreSQL.

Adding a required column to a table of millions of rows in the plain way holds a lock that
blocks every write for the whole rewrite or scan. These do the same in steps: a nullable column
without its foreign key (instant), a backfill in short batches (each its own transaction), then
the foreign key and NOT NULL checked while writes go on, and indexes built concurrently. On
other databases (the offline demo's SQLite) they do what the plain operations do.

Migrations using them are `atomic = False`: PostgreSQL builds indexes concurrently and validates
constraints without blocking writes only outside a transaction block.

A migration that drops what the previous release's code still uses (a unique constraint its
`ON CONFLICT` names, say) is a *contract* migration: `contract = True` on its class. Upgrades
apply the others first (`manage.py migrate_expand`), roll the nodes, then run `migrate`;
`/readyz` does not wait for contract migrations, so the new code serves before they run.
"""

from django.db import migrations, transaction

BACKFILL_BATCH = 20_000


def expand_plan(plan: list, graph) -> list:
    """The migrations of a plan (in its order) that are neither contract migrations nor depend
    on one: what the code being deployed needs while the previous release still serves."""
    held: set[tuple[str, str]] = set()
    expand = []
    for migration, backwards in plan:
        key = (migration.app_label, migration.name)
        parents = {parent.key for parent in graph.node_map[key].parents}
        if getattr(migration, "contract", False) or parents & held:
            held.add(key)
        else:
            expand.append((migration, backwards))
    return expand


def _postgresql(schema_editor) -> bool:
    return schema_editor.connection.vendor == "postgresql"


def backfill_organization(table: str, *, parent: str, via: str) -> migrations.RunPython:
    """Copy `organization_id` from the parent row (`table.via` = `parent.id`), in batches of ids,
    into the rows that have none yet; safe to run again."""

    def forwards(apps, schema_editor):
        connection = schema_editor.connection
        qn = schema_editor.quote_name
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT MIN(id), MAX(id) FROM {qn(table)}")  # noqa: S608
            low, high = cursor.fetchone()
        if low is None:
            return
        # Only constant names are interpolated; the bounds are parameters.
        sql = (
            f"UPDATE {qn(table)} SET organization_id = p.organization_id "  # noqa: S608
            f"FROM {qn(parent)} AS p WHERE p.id = {qn(table)}.{qn(via)} "
            f"AND {qn(table)}.organization_id IS NULL AND {qn(table)}.id >= %s AND {qn(table)}.id < %s"
        )
        for start in range(low, high + 1, BACKFILL_BATCH):
            with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
                cursor.execute(sql, [start, start + BACKFILL_BATCH])

    return migrations.RunPython(forwards, migrations.RunPython.noop, elidable=True)


class ConstrainOnline(migrations.AlterField):
    """From a column without a database constraint to its foreign key, on PostgreSQL added NOT
    VALID then validated: a scan that lets writes through."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if not _postgresql(schema_editor):
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = to_state.apps.get_model(app_label, self.model_name)
        old = from_state.apps.get_model(app_label, self.model_name)._meta.get_field(self.name)
        field = model._meta.get_field(self.name)
        self._online_forwards(schema_editor, model, old, field)

    def _online_forwards(self, schema_editor, model, old, field) -> None:
        table, qn = model._meta.db_table, schema_editor.quote_name
        if field.db_constraint and not old.db_constraint:
            fk = schema_editor._create_fk_sql(model, field, "_fk_%(to_table)s_%(to_column)s")
            schema_editor.execute(f"{fk} NOT VALID")
            schema_editor.execute(f"ALTER TABLE {qn(table)} VALIDATE CONSTRAINT {fk.parts['name']}")


class RequireOrganization(ConstrainOnline):
    """From a nullable `organization` without a database constraint to the final foreign key.

    On PostgreSQL: the foreign key is added NOT VALID then validated, NOT NULL is proven by a
    validated CHECK so that SET NOT NULL needs no scan of its own, and the column's index, if it
    has one, is built concurrently.
    """

    def _online_forwards(self, schema_editor, model, old, field) -> None:
        super()._online_forwards(schema_editor, model, old, field)
        table, column, qn = model._meta.db_table, field.column, schema_editor.quote_name
        if old.null and not field.null:
            check = qn(f"{table}_{column}_nn"[:63])
            schema_editor.execute(
                f"ALTER TABLE {qn(table)} ADD CONSTRAINT {check} CHECK ({qn(column)} IS NOT NULL) NOT VALID"
            )
            schema_editor.execute(f"ALTER TABLE {qn(table)} VALIDATE CONSTRAINT {check}")
            schema_editor.execute(f"ALTER TABLE {qn(table)} ALTER COLUMN {qn(column)} SET NOT NULL")
            schema_editor.execute(f"ALTER TABLE {qn(table)} DROP CONSTRAINT {check}")
        if field.db_index and not old.db_index:
            schema_editor.execute(schema_editor._create_index_sql(model, fields=[field], concurrently=True))


class AddIndexOnline(migrations.AddIndex):
    """CREATE INDEX CONCURRENTLY on PostgreSQL, a plain index elsewhere."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if not _postgresql(schema_editor):
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = to_state.apps.get_model(app_label, self.model_name)
        schema_editor.add_index(model, self.index, concurrently=True)


class RemoveIndexOnline(migrations.RemoveIndex):
    """DROP INDEX CONCURRENTLY on PostgreSQL, a plain drop elsewhere."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if not _postgresql(schema_editor):
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = from_state.apps.get_model(app_label, self.model_name)
        index = from_state.models[app_label, self.model_name_lower].get_index_by_name(self.name)
        schema_editor.remove_index(model, index, concurrently=True)


class AddUniqueOnline(migrations.AddConstraint):
    """A unique constraint whose index PostgreSQL builds concurrently: a unique index, then (for
    an unconditional one) the constraint made of it, which takes no scan."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if not _postgresql(schema_editor):
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = to_state.apps.get_model(app_label, self.model_name)
        constraint, qn = self.constraint, schema_editor.quote_name
        if constraint.expressions:
            # A unique index of expressions is all PostgreSQL has for it: no constraint to attach.
            sql = str(constraint.create_sql(model, schema_editor))
            schema_editor.execute(sql.replace("CREATE UNIQUE INDEX", "CREATE UNIQUE INDEX CONCURRENTLY", 1))
            return
        table = model._meta.db_table
        columns = ", ".join(qn(model._meta.get_field(name).column) for name in constraint.fields)
        condition = constraint._get_condition_sql(model, schema_editor)
        where = f" WHERE {condition}" if condition else ""
        schema_editor.execute(
            f"CREATE UNIQUE INDEX CONCURRENTLY {qn(constraint.name)} ON {qn(table)} ({columns}){where}"
        )
        if constraint.condition is None:
            schema_editor.execute(
                f"ALTER TABLE {qn(table)} ADD CONSTRAINT {qn(constraint.name)} "
                f"UNIQUE USING INDEX {qn(constraint.name)}"
            )
