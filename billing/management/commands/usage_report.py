from django.core.management.base import BaseCommand

from billing import usage


class Command(BaseCommand):
    help = "Send metered usage to Stripe's billing meters (also run by Celery beat)."

    def handle(self, *args, **options):
        outcome = usage.usage_report_run()
        self.stdout.write(
            f"{outcome.prepared} prepared, {outcome.sent} sent, "
            f"{outcome.retrying} to retry, {outcome.failed} failed"
        )
