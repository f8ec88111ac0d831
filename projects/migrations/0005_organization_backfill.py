# The distribution column, step 2 of 3: copied from each row's parent in short batches, each
# its own transaction, so no lock is held for long.

from django.db import migrations

from common.online_migrations import backfill_organization


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("projects", "0004_organization_column")]

    operations = [
        backfill_organization("projects_generation", parent="projects_project", via="project_id"),
    ]
