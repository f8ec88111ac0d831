from django.core.management.base import BaseCommand

from billing.metering import api_calls_flush


class Command(BaseCommand):
    help = "Write the API calls counted in Redis to the usage log (also run by Celery beat)."

    def handle(self, *args, **options):
        written = api_calls_flush()
        self.stdout.write(f"{written} API call(s) written.")
