# The distribution column, step 1 of 3: nullable and without its foreign key, so adding it is
# instant however big the table (see common/online_migrations.py).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("projects", "0003_generation_idempotency_key_required"),
        ("teams", "0004_queued_task"),
    ]

    operations = [
        migrations.AddField(
            model_name="generation",
            name="organization",
            field=models.ForeignKey(
                blank=True,
                null=True,
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="teams.organization",
            ),
        ),
    ]
