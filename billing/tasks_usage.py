"""Celery: report metered usage to Stripe on a schedule (beat), retried with back-off."""

import stripe
from celery import current_app, shared_task

from billing import api_calls, usage

REPORT_EVERY = 300.0  # seconds; Stripe invoices an ended period about an hour later


@shared_task(
    autoretry_for=(OSError, stripe.APIConnectionError, stripe.RateLimitError),
    retry_backoff=True,
    max_retries=5,
)
def report_usage() -> dict:
    outcome = usage.usage_report_run()
    return vars(outcome)


@shared_task
def flush_api_calls() -> int:
    return api_calls.api_calls_flush()


# Beat reads its schedule after the task modules are imported, so registering here is enough.
current_app.conf.beat_schedule = {
    **(current_app.conf.beat_schedule or {}),
    "billing.report_usage": {"task": "billing.tasks_usage.report_usage", "schedule": REPORT_EVERY},
    "billing.flush_api_calls": {
        "task": "billing.tasks_usage.flush_api_calls",
        "schedule": api_calls.FLUSH_EVERY,
    },
}
