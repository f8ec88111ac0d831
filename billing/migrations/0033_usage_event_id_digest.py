from django.db import migrations, models

import billing.models.usage
from common.online_migrations import AddUniqueOnline

# The first 16 bytes of SHA-256 of `organization:source:event_id`, as a uuid (`EventIdDigest`).
# Immutable in fact: a database's encoding never changes, so a text's UTF-8 bytes never do.
DIGEST = """
CREATE OR REPLACE FUNCTION billing_event_id_digest(bigint, text, text) RETURNS uuid
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
SELECT encode(substring(sha256(convert_to($1::text || ':' || $2 || ':' || $3, 'UTF8')) FROM 1 FOR 16), 'hex')::uuid
$$
"""


def create_digest(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DIGEST)


def drop_digest(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS billing_event_id_digest(bigint, text, text)")


class Migration(migrations.Migration):
    # The new index is built while events keep arriving; the old one goes once it can serve.
    atomic = False

    dependencies = [
        ("billing", "0032_usage_event_indexes"),
    ]

    operations = [
        migrations.RunPython(create_digest, drop_digest),
        AddUniqueOnline(
            model_name="usageevent",
            constraint=models.UniqueConstraint(
                billing.models.usage.EventIdDigest("organization", "source", "event_id"),
                name="billing_usageevent_unique_digest",
            ),
        ),
        migrations.RemoveConstraint(
            model_name="usageevent",
            name="billing_usageevent_unique_id",
        ),
    ]
