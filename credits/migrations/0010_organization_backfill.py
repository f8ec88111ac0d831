# The distribution column, step 2 of 3: copied from each row's parent in short batches, each
# its own transaction, so no lock is held for long.

from django.db import migrations

from common.online_migrations import backfill_organization


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("credits", "0009_organization_column")]

    operations = [
        backfill_organization("credits_creditgrant", parent="credits_creditaccount", via="account_id"),
        backfill_organization("credits_credittransaction", parent="credits_creditaccount", via="account_id"),
        backfill_organization("credits_creditusageday", parent="credits_creditaccount", via="account_id"),
        backfill_organization("credits_creditreservation", parent="credits_creditaccount", via="account_id"),
        backfill_organization("credits_creditrecharge", parent="credits_creditaccount", via="account_id"),
        backfill_organization("credits_creditpurchase", parent="credits_creditaccount", via="account_id"),
        backfill_organization("credits_creditdispute", parent="credits_creditaccount", via="account_id"),
        backfill_organization(
            "credits_creditallocation", parent="credits_credittransaction", via="transaction_id"
        ),
    ]
