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

    dependencies = [("projects", "0005_organization_backfill")]

    operations = [
        backfill_organization("projects_generation", parent="projects_project", via="project_id"),
        RequireOrganization(
            model_name="generation",
            name="organization",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="teams.organization",
            ),
        ),
        AddUniqueOnline(
            model_name="generation",
            constraint=models.UniqueConstraint(
                fields=("organization", "project", "idempotency_key"),
                name="projects_generation_unique_org_key",
            ),
        ),
        migrations.RemoveConstraint(model_name="generation", name="projects_generation_unique_key"),
    ]
