"""Every email billing sends, each a Celery task queued after the commit that caused it. One
rule says who receives them: `Organization.billing_contacts()` (a dispute also goes to staff).

The task names are the ones these tasks had in `billing.tasks`, so messages already queued under
them still run.
"""

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse

from billing.models import Payment, PaymentDispute, SubscriptionDuplicate, UsageAlert
from teams.models import User


@shared_task(
    name="billing.tasks.send_usage_alert", autoretry_for=(OSError,), retry_backoff=True, max_retries=5
)
def send_usage_alert(alert_id: int) -> None:
    alert = UsageAlert.objects.select_related("organization", "feature").filter(pk=alert_id).first()
    if alert is None:
        return
    recipients = alert.organization.billing_contacts()
    context = {
        "alert": alert,
        "pricing_url": settings.SITE_URL + reverse("pricing"),
        "dashboard_url": settings.SITE_URL + alert.organization.get_absolute_url(),
    }
    send_mail(
        subject=f"{alert.organization.name} has used {alert.threshold}% of its {alert.feature.name.lower()}",
        message=render_to_string("billing/email/usage_alert.txt", context),
        from_email=None,
        recipient_list=recipients,
    )


@shared_task(
    name="billing.tasks.send_payment_failed", autoretry_for=(OSError,), retry_backoff=True, max_retries=5
)
def send_payment_failed(payment_id: int) -> None:
    payment = Payment.objects.select_related("organization").filter(pk=payment_id).first()
    if payment is None:
        return
    organization = payment.organization
    recipients = organization.billing_contacts()
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
        recipient_list=recipients,
    )


@shared_task(
    name="billing.tasks.send_dispute_notice", autoretry_for=(OSError,), retry_backoff=True, max_retries=5
)
def send_dispute_notice(dispute_id: int) -> None:
    """Tell the owner, the billing contacts and staff about a dispute, once per state: the
    claim (a conditional update of `notified_status`) comes before the email."""
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
    recipients = set(organization.billing_contacts())
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


@shared_task(
    name="billing.tasks.send_duplicate_subscription_refunded",
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def send_duplicate_subscription_refunded(duplicate_id: int) -> None:
    """Tell the owners that a second subscription was canceled, and what became of its payment."""
    duplicate = SubscriptionDuplicate.objects.select_related("organization").filter(pk=duplicate_id).first()
    if duplicate is None:
        return
    organization = duplicate.organization
    recipients = organization.billing_contacts()
    if not recipients:
        return  # a deleted organization has no members left to tell
    context = {
        "duplicate": duplicate,
        "organization": organization,
        "billing_url": settings.SITE_URL + reverse("billing", args=[organization.slug]),
    }
    send_mail(
        subject=f"{organization.name}: a second subscription was canceled",
        message=render_to_string("billing/email/duplicate_subscription.txt", context),
        from_email=None,
        recipient_list=recipients,
    )


@shared_task(
    name="billing.tasks.send_payment_action_required",
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def send_payment_action_required(payment_id: int) -> None:
    """The card's bank asks the cardholder to authenticate a payment (3D Secure): the link goes
    to the hosted invoice page where it is done. Queued once, when Tally first learns of it."""
    payment = (
        Payment.objects.select_related("organization", "organization__subscription")
        .filter(pk=payment_id)
        .first()
    )
    if payment is None or not payment.needs_authentication:
        return  # authenticated (and paid) before this ran
    organization = payment.organization
    subscription = getattr(organization, "subscription", None)
    context = {
        "payment": payment,
        "organization": organization,
        "grace_until": subscription.grace_until if subscription else None,
        "billing_url": settings.SITE_URL + reverse("billing", args=[organization.slug]),
    }
    send_mail(
        subject=f"{organization.name}: your bank asks you to confirm a payment",
        message=render_to_string("billing/email/payment_action_required.txt", context),
        from_email=None,
        recipient_list=organization.billing_contacts(),
    )
