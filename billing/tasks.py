import stripe
from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse

from billing.models import UsageAlert
from teams.models import Membership, Role, User


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_usage_alert(alert_id: int) -> None:
    alert = UsageAlert.objects.select_related("organization", "feature").filter(pk=alert_id).first()
    if alert is None:
        return
    recipients = list(
        Membership.objects.filter(
            organization=alert.organization, role__in=[Role.OWNER, Role.ADMIN, Role.BILLING]
        ).values_list("user__email", flat=True)
    )
    if alert.organization.billing_email:
        recipients.append(alert.organization.billing_email)
    context = {
        "alert": alert,
        "pricing_url": settings.SITE_URL + reverse("pricing"),
        "dashboard_url": settings.SITE_URL + alert.organization.get_absolute_url(),
    }
    send_mail(
        subject=f"{alert.organization.name} has used {alert.threshold}% of its {alert.feature.name.lower()}",
        message=render_to_string("billing/email/usage_alert.txt", context),
        from_email=None,
        recipient_list=sorted(set(recipients)),
    )


@shared_task(
    autoretry_for=(OSError, stripe.APIConnectionError, stripe.RateLimitError),
    retry_backoff=True,
    max_retries=8,
)
def process_stripe_event(event_id: str, kind: str | None = None, object_id: str | None = None) -> None:
    from billing import stripe_events

    stripe_events.handle(event_id, kind, object_id)


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_payment_failed(payment_id: int) -> None:
    from billing.models import Payment

    payment = Payment.objects.select_related("organization").filter(pk=payment_id).first()
    if payment is None:
        return
    organization = payment.organization
    recipients = list(
        Membership.objects.filter(
            organization=organization, role__in=[Role.OWNER, Role.ADMIN, Role.BILLING]
        ).values_list("user__email", flat=True)
    )
    context = {
        "payment": payment,
        "organization": organization,
        "billing_url": settings.SITE_URL + reverse("billing", args=[organization.slug]),
        "grace_days": settings.BILLING_GRACE_DAYS,
    }
    send_mail(
        subject=f"Payment failed for {organization.name}: please update your card",
        message=render_to_string("billing/email/payment_failed.txt", context),
        from_email=None,
        recipient_list=sorted(set(recipients)),
    )


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_dispute_notice(dispute_id: int) -> None:
    """Tell the owner, the billing contacts and staff about a dispute, once per state: the
    claim (a conditional update of `notified_status`) comes before the email."""
    from billing.models import PaymentDispute

    record = PaymentDispute.objects.select_related("organization", "payment").filter(pk=dispute_id).first()
    if record is None:
        return
    if (
        not PaymentDispute.objects.filter(pk=record.pk)
        .exclude(notified_status=record.status)
        .update(notified_status=record.status)
    ):
        return
    organization = record.organization
    recipients = set(
        Membership.objects.filter(organization=organization, role__in=[Role.OWNER, Role.BILLING]).values_list(
            "user__email", flat=True
        )
    )
    if organization.billing_email:
        recipients.add(organization.billing_email)
    recipients |= set(User.objects.filter(is_staff=True, is_active=True).values_list("email", flat=True))
    context = {
        "dispute": record,
        "organization": organization,
        "billing_url": settings.SITE_URL + reverse("billing", args=[organization.slug]),
        "grace_days": settings.BILLING_GRACE_DAYS,
    }
    verb = {"open": "disputed", "won": "dispute won", "lost": "dispute lost"}[record.status]
    send_mail(
        subject=f"{organization.name}: payment {verb}",
        message=render_to_string("billing/email/dispute.txt", context),
        from_email=None,
        recipient_list=sorted(recipients),
    )


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_duplicate_subscription_refunded(duplicate_id: int) -> None:
    """Tell the owners that a second subscription was canceled and its payment refunded."""
    from billing.models import SubscriptionDuplicate

    duplicate = SubscriptionDuplicate.objects.select_related("organization").filter(pk=duplicate_id).first()
    if duplicate is None:
        return
    organization = duplicate.organization
    recipients = list(
        Membership.objects.filter(organization=organization, role=Role.OWNER).values_list(
            "user__email", flat=True
        )
    )
    if not recipients:
        return  # a deleted organization has no members left to tell
    context = {
        "duplicate": duplicate,
        "organization": organization,
        "billing_url": settings.SITE_URL + reverse("billing", args=[organization.slug]),
    }
    send_mail(
        subject=f"{organization.name}: a second subscription was canceled and refunded",
        message=render_to_string("billing/email/duplicate_subscription.txt", context),
        from_email=None,
        recipient_list=sorted(set(recipients)),
    )


from billing import tasks_usage  # noqa: E402, F401  (autodiscovery finds tasks.py only)


@shared_task
def reconcile_subscriptions() -> int:
    """Nightly: repair what a lost webhook left behind."""
    from billing.subscriptions import subscription_reconcile

    return len(subscription_reconcile(fix=True))


@shared_task(
    bind=True,
    autoretry_for=(OSError, stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=10,
)
def seat_sync(self, organization_id: int) -> None:
    """Set the seat quantity in Stripe to the live count; Stripe errors retry with back-off.
    The task id names the sync, so its retries reuse one idempotency key."""
    from billing import seats

    try:
        seats.seat_sync(organization_id=organization_id, attempt=self.request.id or "")
    except seats.SyncBusy as busy:
        raise self.retry(exc=busy, countdown=2, max_retries=30) from None


@shared_task(
    autoretry_for=(OSError, stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError),
    retry_backoff=True,
    max_retries=10,
)
def subscription_cancel_deleted(organization_id: int) -> None:
    from billing import seats

    seats.subscription_cancel_deleted(organization_id=organization_id)
