from celery import shared_task

from credits import services


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_low_balance_alert(account_id: int, transaction_id: int) -> None:
    services.credits_low_balance_alert_send(account_id=account_id, transaction_id=transaction_id)


@shared_task
def auto_recharge(account_id: int) -> None:
    services.credit_auto_recharge_start(account_id=account_id)


@shared_task
def expire_credits() -> None:
    """Periodic (every few minutes): release stale holds, then expire grants past their date."""
    services.credit_reservations_expire()
    services.credit_grants_expire()
