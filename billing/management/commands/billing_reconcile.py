from django.core.management.base import BaseCommand

from billing.reconcile import billing_invariants_check, subscription_reconcile


class Command(BaseCommand):
    help = (
        "Compare every organization's plan, status and quantities with Stripe, and check the "
        "billing invariants: one live subscription that Tally tracks (I1), meter totals (I4), "
        "seat quantities (I5)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--fix", action="store_true", help="repair what is safe to repair")

    def handle(self, *args, fix: bool, **options) -> None:
        drifts = subscription_reconcile(fix=fix)
        for drift in drifts:
            self.stdout.write(
                f"{drift.organization.slug}: {drift.field} is {drift.local!r} here, "
                f"{drift.remote!r} in Stripe{' (fixed)' if fix else ''}"
            )
        breaches = billing_invariants_check(fix=fix)
        for breach in breaches:
            self.stdout.write(str(breach))
        if not drifts and not breaches:
            self.stdout.write(self.style.SUCCESS("Every subscription matches Stripe."))
        elif not fix:
            self.stdout.write(
                self.style.WARNING(
                    f"{len(drifts) + len(breaches)} difference(s); --fix repairs what is safe."
                )
            )
