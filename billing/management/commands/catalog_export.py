import sys
from pathlib import Path

from django.core.management.base import BaseCommand

from billing.catalog.export import catalog_export_toml


class Command(BaseCommand):
    help = "Write the catalog in the database in the catalog file's format (to stdout, or --file)."

    def add_arguments(self, parser):
        parser.add_argument("--file", type=Path, help="write here instead of the standard output")

    def handle(self, *args, file: Path | None, **options) -> None:
        text = catalog_export_toml()
        if file is None:
            sys.stdout.write(text) if self.stdout._out is sys.stdout else self.stdout.write(text, ending="")
            return
        file.write_text(text)
        self.stdout.write(f"Catalog written to {file}.")
