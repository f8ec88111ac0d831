import common.digest
from django.db import migrations, models

from common.online_migrations import AddUniqueOnline


class Migration(migrations.Migration):
    # The new index is built while events keep arriving. The old one goes in 0034, a contract
    # migration: the previous release's ingestion names it in its ON CONFLICT.
    atomic = False

    dependencies = [
        ("billing", "0032_usage_event_indexes"),
    ]

    operations = [
        migrations.RunPython(common.digest.create_functions, migrations.RunPython.noop),
        AddUniqueOnline(
            model_name="usageevent",
            constraint=models.UniqueConstraint(
                common.digest.Digest("organization", "source", "event_id"),
                name="billing_usageevent_unique_digest",
            ),
        ),
    ]
