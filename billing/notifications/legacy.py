"""The task names messages may still be queued under, sent through the notices."""

from celery import shared_task

from billing.models import (
    Notice,
    NoticeKind,
    Payment,
    PaymentDispute,
    SubscriptionDuplicate,
    UsageAlert,
)
from billing.notifications.notices import notice_queue, notice_send
from teams.models import Organization

# --- The task names messages may still be queued under --------------------------------------


def _legacy_task(name: str):
    return shared_task(name=name, autoretry_for=(OSError,), retry_backoff=True, max_retries=5)


def notice_send_now(
    *, organization: Organization, kind: str, key: str, data: dict | None = None
) -> Notice | None:
    """Record the notice and send it at once, from a task that is itself the delivery; a notice
    recorded before is sent only if it is still pending (its first send failed: this is the
    retry). None when there was nothing to send."""
    recorded = notice_queue(organization=organization, kind=kind, key=key, data=data)
    if recorded is None:
        recorded = Notice.objects.filter(key=f"{kind}:{key}", status=Notice.Status.PENDING).first()
    if recorded is not None:
        notice_send(notice_id=recorded.pk)
    return recorded


def usage_alert_queue(*, alert: UsageAlert) -> None:
    notice_queue(
        organization=alert.organization,
        kind=NoticeKind.USAGE_ALERT,
        key=str(alert.pk),
        data={"alert": alert.pk},
    )


@_legacy_task("billing.tasks.send_usage_alert")
def send_usage_alert(alert_id: int) -> None:
    alert = UsageAlert.objects.select_related("organization").filter(pk=alert_id).first()
    if alert is not None:
        notice_send_now(
            organization=alert.organization,
            kind=NoticeKind.USAGE_ALERT,
            key=str(alert.pk),
            data={"alert": alert.pk},
        )


@_legacy_task("billing.tasks.send_payment_failed")
def send_payment_failed(payment_id: int) -> None:
    payment = Payment.objects.select_related("organization").filter(pk=payment_id).first()
    if payment is not None:
        notice_send_now(
            organization=payment.organization,
            kind=NoticeKind.PAYMENT_FAILED,
            key=f"{payment.stripe_invoice_id}:queued",
            data={"payment": payment.pk},
        )


@_legacy_task("billing.tasks.send_payment_action_required")
def send_payment_action_required(payment_id: int) -> None:
    payment = Payment.objects.select_related("organization").filter(pk=payment_id).first()
    if payment is not None:
        notice_send_now(
            organization=payment.organization,
            kind=NoticeKind.PAYMENT_ACTION_REQUIRED,
            key=f"{payment.stripe_invoice_id}:queued",
            data={"payment": payment.pk},
        )


@_legacy_task("billing.tasks.send_dispute_notice")
def send_dispute_notice(dispute_id: int) -> None:
    record = PaymentDispute.objects.select_related("organization").filter(pk=dispute_id).first()
    if record is not None:
        notice_send_now(
            organization=record.organization,
            kind=NoticeKind.DISPUTE,
            key=f"{record.stripe_dispute_id}:{record.status}",
            data={"dispute": record.pk, "status": record.status},
        )


def dispute_notice_queue(*, record: PaymentDispute) -> None:
    notice_queue(
        organization=record.organization,
        kind=NoticeKind.DISPUTE,
        key=f"{record.stripe_dispute_id}:{record.status}",
        data={"dispute": record.pk, "status": record.status},
    )


@_legacy_task("billing.tasks.send_duplicate_subscription_refunded")
def send_duplicate_subscription_refunded(duplicate_id: int) -> None:
    duplicate = SubscriptionDuplicate.objects.select_related("organization").filter(pk=duplicate_id).first()
    if duplicate is not None:
        notice_send_now(
            organization=duplicate.organization,
            kind=NoticeKind.DUPLICATE_REFUNDED,
            key=duplicate.stripe_subscription_id,
            data={"duplicate": duplicate.pk},
        )


def duplicate_refunded_queue(*, duplicate: SubscriptionDuplicate) -> None:
    notice_queue(
        organization=duplicate.organization,
        kind=NoticeKind.DUPLICATE_REFUNDED,
        key=duplicate.stripe_subscription_id,
        data={"duplicate": duplicate.pk},
    )
