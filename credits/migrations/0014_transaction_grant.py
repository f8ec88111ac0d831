# A debit's one grant on its ledger line: the column is instant to add, its foreign key is
# validated while writes go on (see common/online_migrations.py). Lines written before keep
# their allocation rows, which say the same.

import django.db.models.deletion
from django.db import migrations, models

from common.online_migrations import ConstrainOnline


def _grant(*, db_constraint: bool) -> models.ForeignKey:
    return models.ForeignKey(
        blank=True,
        null=True,
        db_constraint=db_constraint,
        db_index=False,
        on_delete=django.db.models.deletion.PROTECT,
        related_name="+",
        to="credits.creditgrant",
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("credits", "0013_idempotency_key_index_drop"),
    ]

    operations = [
        migrations.AddField(model_name="credittransaction", name="grant", field=_grant(db_constraint=False)),
        ConstrainOnline(model_name="credittransaction", name="grant", field=_grant(db_constraint=True)),
    ]
