"""One usage event log, step 1 of 3: the events sent to meters gain a source and a feature, so
that units consumed through the entitlements can join them (step 2) before the consume table
goes and the log takes its name (step 3). Each step is its own transaction."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0014_catalog_push_and_plan_versions"),
    ]

    operations = [
        migrations.AddField(
            model_name="meterevent",
            name="source",
            field=models.CharField(
                choices=[
                    ("ingest", "Sent to a meter"),
                    ("consume", "Consumed (or released) through the entitlements"),
                ],
                default="ingest",
                max_length=16,
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="meterevent",
            name="feature",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="billing.feature",
            ),
        ),
        migrations.AlterField(
            model_name="meterevent",
            name="meter",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="events",
                to="billing.meter",
            ),
        ),
        migrations.AlterField(
            model_name="meterevent",
            name="event_id",
            field=models.CharField(help_text="The idempotency id, unique per source.", max_length=255),
        ),
        # Each source keeps its own ids: a consume key may equal an id a client sent.
        migrations.RemoveConstraint(model_name="meterevent", name="billing_meterevent_unique_id"),
        migrations.AddConstraint(
            model_name="meterevent",
            constraint=models.UniqueConstraint(
                fields=("organization", "source", "event_id"), name="billing_usageevent_unique_id"
            ),
        ),
        migrations.AddConstraint(
            model_name="meterevent",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("feature__isnull", True), ("meter__isnull", False), ("source", "ingest")),
                    models.Q(("feature__isnull", False), ("meter__isnull", True), ("source", "consume")),
                    _connector="OR",
                ),
                name="billing_usageevent_meter_or_feature",
            ),
        ),
        migrations.RenameIndex(
            model_name="meterevent", new_name="billing_usageevent_org_time", old_name="billing_meterevent_org_time"
        ),
        migrations.RenameIndex(
            model_name="meterevent",
            new_name="billing_usageevent_period_dim",
            old_name="billing_meterevent_period_dim",
        ),
        migrations.AddIndex(
            model_name="meterevent",
            index=models.Index(fields=["organization", "feature", "period_start"], name="billing_usageevent_feature"),
        ),
    ]
