from django.core.management.base import BaseCommand, CommandError

from common.errors import ServiceError
from credits import services


class Command(BaseCommand):
    help = "Add a credit package, e.g.: credit_package_add enterprise-1m 'Enterprise 1M' 1000000 99900"

    def add_arguments(self, parser):
        parser.add_argument("code", help="Stable public id, e.g. pack-50.")
        parser.add_argument("name")
        parser.add_argument("credits", type=int)
        parser.add_argument("unit_amount", type=int, help="Price in minor units (cents).")
        parser.add_argument("--bonus", type=int, default=0, dest="bonus_credits")
        parser.add_argument("--currency", default="usd")
        parser.add_argument("--description", default="")
        parser.add_argument("--sort-order", type=int, default=0, dest="sort_order")

    def handle(self, *args, **options) -> None:
        try:
            package = services.credit_package_create(
                code=options["code"],
                name=options["name"],
                credits=options["credits"],
                unit_amount=options["unit_amount"],
                bonus_credits=options["bonus_credits"],
                currency=options["currency"],
                description=options["description"],
                sort_order=options["sort_order"],
            )
        except ServiceError as error:
            raise CommandError(f"{error.message} ({error.code})") from None
        self.stdout.write(self.style.SUCCESS(f"Added {package.code}: {package}"))
