from django.core.management.base import BaseCommand, CommandError

from credits import selectors


class Command(BaseCommand):
    help = "Check every account: balance = sum of ledger = remaining grants; held = open reservations."

    def handle(self, *args, **options) -> None:
        problems = selectors.reconciliation_problems()
        for problem in problems:
            self.stderr.write(str(problem))
        if problems:
            raise CommandError(f"{len(problems)} discrepancies found.")
        self.stdout.write(self.style.SUCCESS("Every credit account reconciles."))
