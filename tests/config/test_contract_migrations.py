"""Upgrades while the previous release still serves: the migrations that drop what it uses are
contract migrations, applied after the nodes are rolled. `migrate_expand` stops before them,
`/readyz` does not wait for them, and the previous release's statements work in between."""

import pytest
from django.core.management import call_command
from django.db import ProgrammingError, connection, migrations, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from billing.models import Meter
from config import ops
from teams.models import Organization

pytestmark = pytest.mark.django_db(transaction=True)

EXPANDED = [("billing", "0033_usage_event_id_digest"), ("credits", "0012_idempotency_key_digest")]
CONTRACT = [("billing", "0034_usage_event_id_index_drop"), ("credits", "0013_idempotency_key_index_drop")]

# What the previous release's ingestion sends (billing/metering/ingest.py before the digest).
PREVIOUS_INGEST = (
    "INSERT INTO billing_usageevent (organization_id, source, meter_id, event_id, value, timestamp, "
    "period_start, properties, dimension, received_at) "
    "VALUES (%s, 'ingest', %s, %s, 1, %s, %s, '{}', '', %s) "
    "ON CONFLICT (organization_id, source, event_id) DO NOTHING RETURNING id"
)


def migrate(targets) -> None:
    MigrationExecutor(connection).migrate(targets)


def applied() -> set[tuple[str, str]]:
    return set(MigrationRecorder(connection).applied_migrations())


@pytest.fixture
def expanded():
    migrate(EXPANDED)
    ops._migrated = False
    yield
    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    ops._migrated = False


def previous_ingest(org, event_id: str):
    meter = Meter.objects.create(key=f"m-{event_id}", name="m", aggregation="sum")
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(PREVIOUS_INGEST, [org.pk, meter.pk, event_id, now, now, now])
        cursor.execute(PREVIOUS_INGEST, [org.pk, meter.pk, event_id, now, now, now])  # a retry
        return cursor.fetchall()


def test_the_nodes_are_ready_and_the_previous_release_ingests_before_the_contract(expanded, client):
    assert not applied() & set(CONTRACT)
    assert client.get("/readyz").status_code == 200

    org = Organization.objects.create(name="Acme", slug="acme")
    assert previous_ingest(org, "evt-1") == []  # the retry was a duplicate, as it was before

    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    with pytest.raises(ProgrammingError, match="no unique or exclusion constraint"):
        previous_ingest(org, "evt-2")  # which is why dropping its constraint is a contract


def test_migrate_expand_applies_everything_but_the_contract_migrations():
    migrate([("billing", "0032_usage_event_indexes"), ("credits", "0011_organization_required")])
    ops._migrated = False
    try:
        assert ops._database() == "migrations not applied"
        call_command("migrate_expand", verbosity=0)
        assert set(EXPANDED) <= applied() and not applied() & set(CONTRACT)
        assert ops._database() is None
        call_command("migrate", verbosity=0)
        assert set(CONTRACT) <= applied()
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
        ops._migrated = False


# Written before contract migrations existed, and released since.
RELEASED_BEFORE = {
    ("billing", "0015_usage_event_log"),
    ("billing", "0017_usage_event_log_rename"),
    ("billing", "0029_organization_required"),
    ("credits", "0002_purchases_and_clawbacks"),
    ("credits", "0011_organization_required"),
    ("projects", "0006_organization_required"),
}


DROPS = (migrations.RemoveConstraint, migrations.RemoveField, migrations.DeleteModel)


def _drops(operations) -> list[str]:
    # A dropped index only slows the previous release down; a dropped constraint, column or
    # table can break it.
    found = []
    for operation in operations:
        if isinstance(operation, migrations.SeparateDatabaseAndState):
            found += _drops(operation.database_operations)
        elif isinstance(operation, DROPS):
            found.append(type(operation).__name__)
    return found


@pytest.mark.django_db(transaction=False)
def test_every_migration_that_drops_a_constraint_a_column_or_a_table_is_a_contract_one():
    loader = MigrationLoader(None, ignore_no_migrations=True)
    offending = [
        (app, name, _drops(migration.operations))
        for (app, name), migration in sorted(loader.disk_migrations.items())
        if app in ("teams", "billing", "credits", "projects")
        and (app, name) not in RELEASED_BEFORE
        and not getattr(migration, "contract", False)
        and _drops(migration.operations)
    ]
    assert offending == []
