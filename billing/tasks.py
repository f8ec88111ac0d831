from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse

from billing.models import UsageAlert
from teams.models import Membership, Role


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
