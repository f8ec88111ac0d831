# The distribution column, step 3 of 3: rows written meanwhile by code that did not set it are
# backfilled again, then the foreign key and NOT NULL are validated without blocking writes, and
# the indexes and unique constraints that lead with the organization replace those that led
# with its parent, built concurrently before the old ones go.

import django.db.models.deletion
from django.db import migrations, models

from common.online_migrations import (
    AddIndexOnline,
    AddUniqueOnline,
    RemoveIndexOnline,
    RequireOrganization,
    backfill_organization,
)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("billing", "0028_organization_backfill")]

    operations = [
        backfill_organization(
            "billing_pricemigration", parent="billing_orgsubscription", via="subscription_id"
        ),
        RequireOrganization(
            model_name="pricemigration",
            name="organization",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="teams.organization",
            ),
        ),
        AddUniqueOnline(
            model_name="pricemigration",
            constraint=models.UniqueConstraint(
                fields=("organization", "subscription", "from_price_id", "to_price_id"),
                name="billing_pricemigration_org_once",
            ),
        ),
        migrations.RemoveConstraint(model_name="pricemigration", name="billing_pricemigration_once"),
    ]
