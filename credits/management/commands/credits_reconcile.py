from django.core.management.base import BaseCommand, CommandError

from credits.reconcile import credit_invariants_check


class Command(BaseCommand):
    help = (
        "Check every account: balance = sum of ledger = remaining grants, held = open reservations "
        "(I2); and that no organization can spend more than it paid for and was given (I3)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--fix", action="store_true", help="repair what is safe to repair")

    def handle(self, *args, fix: bool = False, **options) -> None:
        breaches = credit_invariants_check(fix=fix)
        for breach in breaches:
            self.stderr.write(str(breach))
        if any(not breach.fixed for breach in breaches):
            raise CommandError(f"{len(breaches)} discrepancies found.")
        if breaches:
            self.stdout.write(self.style.SUCCESS(f"{len(breaches)} discrepancies fixed."))
            return
        self.stdout.write(self.style.SUCCESS("Every credit account reconciles."))
