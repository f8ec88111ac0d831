from django.core.management.base import BaseCommand

from billing import seats


class Command(BaseCommand):
    help = "Queue again the seat syncs a lost task left undone (also every minute from beat)."

    def handle(self, *args, **options):
        self.stdout.write(f"queued {seats.seat_syncs_sweep()} seat syncs")
