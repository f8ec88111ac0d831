from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

from common.online_migrations import expand_plan


class Command(BaseCommand):
    help = (
        "Apply every migration but the contract ones (which drop what the previous release "
        "still uses) and those that depend on them: run it before rolling the nodes, and "
        "`migrate` once every node runs the new code."
    )

    def handle(self, *args, **options):
        executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        graph = executor.loader.graph
        plan = executor.migration_plan(graph.leaf_nodes())
        expand = expand_plan(plan, graph)
        # Nothing in `expand` depends on a migration left out of it, so migrating each app to its
        # last migration there applies exactly `expand`.
        last: dict[str, str] = {}
        for migration, _ in expand:
            last[migration.app_label] = migration.name
        for app_label, name in last.items():
            call_command("migrate", app_label, name, interactive=False, verbosity=options["verbosity"])
        held = len(plan) - len(expand)
        self.stdout.write(
            f"applied {len(expand)} migrations; {held} left for `migrate` once every node runs this release"
            if held
            else f"applied {len(expand)} migrations; none is a contract migration"
        )
