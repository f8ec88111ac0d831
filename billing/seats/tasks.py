"""Celery: seat syncs and the cancellation of a deleted organization's subscription, retried with back-off."""

import stripe
from celery import shared_task

from billing import (
    seats,
)


@shared_task(
    name="billing.tasks.seat_sync",
    bind=True,
    autoretry_for=(OSError, stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=10,
)
def seat_sync(self, organization_id: int) -> None:
    """Set the seat quantity in Stripe to the live count; Stripe errors retry with back-off.
    The task id names the sync, so its retries reuse one idempotency key."""
    try:
        seats.seat_sync(organization_id=organization_id, attempt=self.request.id or "")
    except seats.SyncBusy as busy:
        raise self.retry(exc=busy, countdown=2, max_retries=30) from None


@shared_task(
    name="billing.tasks.subscription_cancel_deleted",
    autoretry_for=(OSError, stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError),
    retry_backoff=True,
    max_retries=10,
)
def subscription_cancel_deleted(organization_id: int) -> None:
    seats.subscription_cancel_deleted(organization_id=organization_id)


@shared_task(name="billing.tasks.seat_syncs_sweep")
def seat_syncs_sweep() -> int:
    """Every minute: queue again the seat syncs that a lost task left undone."""
    return seats.seat_syncs_sweep()
