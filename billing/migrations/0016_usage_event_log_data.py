"""One usage event log, step 2 of 3: every consumed (or released) unit moves into the log as a
`consume` event, with its key, signed quantity, period and time unchanged.

One `INSERT ... SELECT` per direction, so a large table is copied by the database without
passing through Python. The counters and the outbox of reports to Stripe are not touched: they
already hold what these events added up to and what Stripe was told."""

from django.db import migrations


def _tables(apps):
    log = apps.get_model("billing", "MeterEvent")._meta.db_table
    consumed = apps.get_model("billing", "UsageEvent")._meta.db_table
    return log, consumed


def forward(apps, schema_editor):
    log, consumed = _tables(apps)
    schema_editor.execute(
        f"INSERT INTO {log} (organization_id, source, meter_id, feature_id, event_id, value, "  # noqa: S608
        "timestamp, period_start, properties, dimension, received_at) "
        "SELECT organization_id, 'consume', NULL, feature_id, idempotency_key, quantity, "
        f"created_at, period_start, '{{}}', '', created_at FROM {consumed} ORDER BY id"
    )


def backward(apps, schema_editor):
    log, consumed = _tables(apps)
    schema_editor.execute(
        f"INSERT INTO {consumed} (organization_id, feature_id, idempotency_key, quantity, "  # noqa: S608
        "period_start, created_at) "
        "SELECT organization_id, feature_id, event_id, value, period_start, timestamp "
        f"FROM {log} WHERE source = 'consume' ORDER BY id"
    )
    schema_editor.execute(f"DELETE FROM {log} WHERE source = 'consume'")  # noqa: S608


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0015_usage_event_log"),
    ]

    operations = [migrations.RunPython(forward, backward)]
