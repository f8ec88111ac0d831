from django.db import migrations


class Migration(migrations.Migration):
    # The previous release's ingestion inserts with ON CONFLICT (organization_id, source,
    # event_id), which needs this constraint: dropped once no node runs that code.
    contract = True

    dependencies = [
        ("billing", "0033_usage_event_id_digest"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="usageevent",
            name="billing_usageevent_unique_id",
        ),
    ]
