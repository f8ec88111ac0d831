"""One usage event log, step 3 of 3: the consume table, now copied into the log, goes, and the
log takes the name `UsageEvent`."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0016_usage_event_log_data"),
    ]

    operations = [
        migrations.DeleteModel(name="UsageEvent"),
        migrations.RenameModel(old_name="MeterEvent", new_name="UsageEvent"),
        migrations.AlterField(
            model_name="usageevent",
            name="organization",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="usage_events", to="teams.organization"
            ),
        ),
    ]
