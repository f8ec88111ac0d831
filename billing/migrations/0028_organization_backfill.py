# The distribution column, step 2 of 3: copied from each row's parent in short batches, each
# its own transaction, so no lock is held for long.

from django.db import migrations

from common.online_migrations import backfill_organization


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("billing", "0027_organization_column")]

    operations = [
        backfill_organization(
            "billing_pricemigration", parent="billing_orgsubscription", via="subscription_id"
        ),
    ]
