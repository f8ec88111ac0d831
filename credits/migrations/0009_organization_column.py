# The distribution column, step 1 of 3: nullable and without its foreign key, so adding it is
# instant however big the table (see common/online_migrations.py).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("credits", "0008_marketing_bullets"),
        ("teams", "0004_queued_task"),
    ]

    operations = [
        migrations.AddField(
            model_name="creditgrant",
            name="organization",
            field=models.ForeignKey(
                blank=True,
                null=True,
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="teams.organization",
            ),
        ),
        migrations.AddField(
            model_name="credittransaction",
            name="organization",
            field=models.ForeignKey(
                blank=True,
                null=True,
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="teams.organization",
            ),
        ),
        migrations.AddField(
            model_name="creditusageday",
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
        migrations.AddField(
            model_name="creditreservation",
            name="organization",
            field=models.ForeignKey(
                blank=True,
                null=True,
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="teams.organization",
            ),
        ),
        migrations.AddField(
            model_name="creditrecharge",
            name="organization",
            field=models.ForeignKey(
                blank=True,
                null=True,
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="teams.organization",
            ),
        ),
        migrations.AddField(
            model_name="creditpurchase",
            name="organization",
            field=models.ForeignKey(
                blank=True,
                null=True,
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="teams.organization",
            ),
        ),
        migrations.AddField(
            model_name="creditdispute",
            name="organization",
            field=models.ForeignKey(
                blank=True,
                null=True,
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="teams.organization",
            ),
        ),
        migrations.AddField(
            model_name="creditallocation",
            name="organization",
            field=models.ForeignKey(
                blank=True,
                null=True,
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="teams.organization",
            ),
        ),
    ]
