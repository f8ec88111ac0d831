from django.core.management.base import BaseCommand

from billing.catalog.versions import price_migrations_run


class Command(BaseCommand):
    help = (
        "Plan versions: email subscribers whose price moves at their next renewal "
        "(BILLING_PRICE_CHANGE_NOTICE_DAYS before), and move them just before it."
    )

    def handle(self, *args, **options) -> None:
        migrations = price_migrations_run()
        self.stdout.write(f"{len(migrations)} price change(s) due.")
