"""Celery: apply a stored Stripe event, retried while Stripe is unreachable."""

import stripe
from celery import shared_task

from billing.webhooks import dispatch


@shared_task(
    name="billing.tasks.process_stripe_event",
    autoretry_for=(OSError, stripe.APIConnectionError, stripe.RateLimitError),
    retry_backoff=True,
    max_retries=8,
)
def process_stripe_event(event_id: str, kind: str | None = None, object_id: str | None = None) -> None:
    dispatch.handle(event_id, kind, object_id)
