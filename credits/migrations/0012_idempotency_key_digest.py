import common.digest
from django.db import migrations, models

from common.online_migrations import AddUniqueOnline


class Migration(migrations.Migration):
    # The new indexes are built while the ledger keeps moving; the old ones go once they serve.
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
        migrations.RemoveConstraint(
            model_name="credittransaction",
            name="credits_credittransaction_unique_org_key",
        ),
        AddUniqueOnline(
            model_name="creditreservation",
            constraint=models.UniqueConstraint(
                common.digest.Digest("organization", "idempotency_key"),
                name="credits_creditreservation_unique_key_digest",
            ),
        ),
        migrations.RemoveConstraint(
            model_name="creditreservation",
            name="credits_creditreservation_unique_org_key",
        ),
    ]
