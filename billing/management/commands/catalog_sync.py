from pathlib import Path

import stripe
from django.core.management.base import BaseCommand, CommandError

from billing import catalog
from billing.catalog.spec import DEFAULT_PATH, CatalogError


class Command(BaseCommand):
    help = "Validate the catalog file, upsert it into the database and push it to Stripe."

    def add_arguments(self, parser):
        parser.add_argument("--file", type=Path, default=DEFAULT_PATH, help="catalog TOML file")
        parser.add_argument("--dry-run", action="store_true", help="show the diff, change nothing")
        parser.add_argument("--no-stripe", action="store_true", help="only the database")

    def handle(self, *args, file: Path, dry_run: bool, no_stripe: bool, **options) -> None:
        try:
            lines = catalog.catalog_sync(path=file, dry_run=dry_run, push=not no_stripe)
        except CatalogError as error:
            raise CommandError(
                f"{file.name} is not valid:\n" + "\n".join(f"  - {p}" for p in error.problems)
            ) from None
        except stripe.StripeError as error:
            raise CommandError(f"Stripe refused the catalog: {error.user_message or error}") from None
        for line in lines:
            style = {"+": self.style.SUCCESS, "-": self.style.WARNING}.get(line[0], str)
            self.stdout.write(style(line))
        verb = "would change" if dry_run else "changed"
        self.stdout.write(f"{len(lines)} {verb}." if lines else "Catalog is up to date.")
