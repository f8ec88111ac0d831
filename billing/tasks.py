"""Celery: billing's nightly repair."""

from celery import shared_task

from billing.reconcile import subscription_reconcile


@shared_task
def reconcile_subscriptions() -> int:
    """Nightly: repair what a lost webhook left behind."""
    return len(subscription_reconcile(fix=True))
