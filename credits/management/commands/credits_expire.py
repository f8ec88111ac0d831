from django.core.management.base import BaseCommand

from credits import services


class Command(BaseCommand):
    help = "Release reservations past their expiry, then expire grants past theirs (the periodic job)."

    def handle(self, *args, **options) -> None:
        released = services.credit_reservations_expire()
        expired = services.credit_grants_expire()
        self.stdout.write(f"Released {released} reservations; wrote {expired} grant expiries.")
