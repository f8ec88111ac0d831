import common.digest
from django.db import migrations, models

from common.online_migrations import AddUniqueOnline


class Migration(migrations.Migration):
    # The new indexes are built while the ledger keeps moving. The old ones go in 0013, a
    # contract migration: the previous release looks its replays up through them.
    atomic = False

    dependencies = [
        ("credits", "0011_organization_required"),
    ]

    operations = [
        migrations.RunPython(common.digest.create_functions, migrations.RunPython.noop),
        AddUniqueOnline(
            model_name="credittransaction",
            constraint=models.UniqueConstraint(
                common.digest.Digest("organization", "idempotency_key"),
                name="credits_credittransaction_unique_key_digest",
            ),
        ),
        AddUniqueOnline(
            model_name="creditreservation",
            constraint=models.UniqueConstraint(
                common.digest.Digest("organization", "idempotency_key"),
                name="credits_creditreservation_unique_key_digest",
            ),
        ),
    ]
