"""Celery: billing's nightly repair."""

from celery import shared_task

from billing.reconcile import billing_invariants_check, payments_reconcile, subscription_reconcile


@shared_task
def reconcile_subscriptions() -> int:
    """Nightly: repair what a lost webhook left behind, as `billing_reconcile --fix` does. Safe
    to run twice or on two nodes at once: every repair is a resync or keyed by a Stripe id."""
    drifts = subscription_reconcile(fix=True)
    breaches = billing_invariants_check(fix=True)
    return len(drifts) + len(breaches) + len(payments_reconcile(fix=True))
