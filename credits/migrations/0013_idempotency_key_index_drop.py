from django.db import migrations


class Migration(migrations.Migration):
    # The previous release finds a replay by (organization, idempotency key): without these
    # indexes it would scan the organization's ledger. Dropped once no node runs that code.
    contract = True

    dependencies = [
        ("credits", "0012_idempotency_key_digest"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="credittransaction",
            name="credits_credittransaction_unique_org_key",
        ),
        migrations.RemoveConstraint(
            model_name="creditreservation",
            name="credits_creditreservation_unique_org_key",
        ),
    ]
