from django.core.management.base import BaseCommand

from billing.subscriptions import subscription_reconcile


class Command(BaseCommand):
    help = "Compare every organization's plan, status and quantities with Stripe."

    def add_arguments(self, parser):
        parser.add_argument("--fix", action="store_true", help="resync what has drifted")

    def handle(self, *args, fix: bool, **options) -> None:
        drifts = subscription_reconcile(fix=fix)
        for drift in drifts:
            self.stdout.write(
                f"{drift.organization.slug}: {drift.field} is {drift.local!r} here, "
                f"{drift.remote!r} in Stripe{' (fixed)' if fix else ''}"
            )
        if not drifts:
            self.stdout.write(self.style.SUCCESS("Every subscription matches Stripe."))
        elif not fix:
            self.stdout.write(self.style.WARNING(f"{len(drifts)} difference(s); --fix resyncs."))
