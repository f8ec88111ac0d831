from django.core.management.base import BaseCommand

from credits import services


class Command(BaseCommand):
    help = "Create the default credit packages and prices that are missing (safe to run again)."

    def handle(self, *args, **options) -> None:
        packages = services.credits_seed_packages()
        prices = services.credit_prices_seed()
        self.stdout.write(self.style.SUCCESS(f"Added {packages} packages and {prices} prices."))
