"""Celery: report metered usage to Stripe on a schedule (beat), retried with back-off."""

import stripe
from celery import shared_task

from billing import metering


@shared_task(
    name="billing.tasks_usage.report_usage",
    autoretry_for=(OSError, stripe.APIConnectionError, stripe.RateLimitError),
    retry_backoff=True,
    max_retries=5,
)
def report_usage() -> dict:
    outcome = metering.usage_report_run()
    return vars(outcome)


@shared_task(name="billing.metering.tasks.flush_api_calls")
def flush_api_calls() -> int:
    return metering.api_calls_flush()
