from pathlib import Path

import stripe
from django.core.management.base import BaseCommand, CommandError

from billing import catalog
from billing.catalog.spec import DEFAULT_PATH, CatalogError


class Command(BaseCommand):
    help = (
        "Compare the catalog file, the database and Stripe, and push the database to Stripe. "
        "The database is the catalog once loaded: the file is applied only to an empty catalog or "
        "with --from-file (`catalog_export` writes the database back to the file)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--file", type=Path, default=DEFAULT_PATH, help="catalog TOML file")
        parser.add_argument("--dry-run", action="store_true", help="show the differences, change nothing")
        parser.add_argument("--no-stripe", action="store_true", help="leave Stripe out")
        parser.add_argument(
            "--from-file",
            action="store_true",
            help="apply the file to the database, reverting what staff changed in the admin",
        )

    def handle(self, *args, file: Path, dry_run: bool, no_stripe: bool, from_file: bool, **options) -> None:
        try:
            report = catalog.catalog_sync(path=file, dry_run=dry_run, push=not no_stripe, from_file=from_file)
        except CatalogError as error:
            raise CommandError(
                f"{file.name} is not valid:\n" + "\n".join(f"  - {p}" for p in error.problems)
            ) from None
        except stripe.StripeError as error:
            raise CommandError(f"Stripe refused the catalog: {error.user_message or error}") from None
        if report.file_vs_database:
            if report.loaded:
                heading = f"{file.name} → database ({'would apply' if dry_run else 'applied'}):"
            else:
                heading = (
                    f"Database vs {file.name} (the database is kept; --from-file would apply the "
                    "file, catalog_export rewrites it):"
                )
            self._section(heading, report.file_vs_database)
        if report.file_problems:
            self.stderr.write(
                f"{file.name} is not valid (the database is kept and still pushed; fix the file, or "
                "rewrite it with catalog_export):"
            )
            for problem in report.file_problems:
                self.stderr.write(f"  - {problem}")
        if report.database_to_stripe:
            self._section(
                f"Database → Stripe ({'would push' if dry_run else 'pushed'}):", report.database_to_stripe
            )
        lines = report.changes
        verb = "would change" if dry_run else "changed"
        self.stdout.write(f"{len(lines)} {verb}." if lines else "Catalog is up to date.")

    def _section(self, heading: str, lines: list[str]) -> None:
        self.stdout.write(heading)
        for line in lines:
            style = {"+": self.style.SUCCESS, "-": self.style.WARNING}.get(line[0], str)
            self.stdout.write(style(f"  {line}"))
