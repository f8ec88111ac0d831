import stripe
from celery import shared_task

from credits import services


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_low_balance_alert(account_id: int, transaction_id: int) -> None:
    services.credits_low_balance_alert_send(account_id=account_id, transaction_id=transaction_id)


@shared_task(
    autoretry_for=(stripe.APIConnectionError, stripe.RateLimitError), retry_backoff=True, max_retries=5
)
def auto_recharge(account_id: int) -> None:
    # A retry finds the recharge pending and, once it is no longer fresh, charges it again
    # under the same idempotency key; the periodic job below finishes any that are left.
    services.credit_auto_recharge_start(account_id=account_id)


@shared_task
def expire_credits() -> None:
    """Periodic (every few minutes): release stale holds, expire grants past their date, and
    finish recharges whose worker stopped between the pending row and the charge's record."""
    services.credit_reservations_expire()
    services.credit_grants_expire()
    services.credit_recharges_resume()


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_recharge_failed_alert(recharge_id: int) -> None:
    services.credit_recharge_failed_alert_send(recharge_id=recharge_id)
