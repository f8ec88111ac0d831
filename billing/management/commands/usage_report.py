from django.core.management.base import BaseCommand

from billing import metering


class Command(BaseCommand):
    help = "Send metered usage to Stripe's billing meters (also run by Celery beat)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--retry-now",
            action="store_true",
            help="Send every unsent report now, pending or failed, instead of at its back-off time.",
        )

    def handle(self, *args, **options):
        outcome = metering.usage_report_run(retry_now=options["retry_now"])
        self.stdout.write(
            f"{outcome.prepared} prepared, {outcome.sent} sent, "
            f"{outcome.retrying} to retry, {outcome.failed} failed (retried later; see the admin)"
        )
