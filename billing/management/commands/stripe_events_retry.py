from datetime import timedelta

from django.core.management.base import BaseCommand
from django.utils import timezone

from billing.models import StripeEventOutcome
from billing.stripe_events import failed_events_retry


class Command(BaseCommand):
    help = "Handle again the Stripe events whose handler failed (also every 10 minutes from beat)."

    def add_arguments(self, parser):
        parser.add_argument("--now", action="store_true", help="every failed event, not only those due")

    def handle(self, *args, now: bool, **options):
        at = timezone.now() + (timedelta(days=3650) if now else timedelta(0))
        processed, failing = failed_events_retry(now=at, limit=10_000)
        left = StripeEventOutcome.objects.filter(status=StripeEventOutcome.Status.FAILED).count()
        self.stdout.write(f"processed {processed}, still failing {failing}, {left} failed in all")
