"""Emails about credits: the low-balance alert and a failed auto-recharge, to the billing contacts."""

from django.conf import settings
from django.core.mail import send_mail
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from credits import selectors
from credits.models import (
    CreditAccount,
    CreditRecharge,
    CreditTransaction,
    RechargeStatus,
)


def credits_low_balance_alert_send(*, account_id: int, transaction_id: int) -> bool:
    """Email the billing contacts once for the crossing that `transaction_id` caused.

    The claim (a conditional update of `low_balance_alerted_at`) comes first, so a task that is
    delivered twice sends one email; a later crossing is newer than the claim and alerts again.
    """
    entry = CreditTransaction.objects.filter(pk=transaction_id, account_id=account_id).first()
    if entry is None:
        return False
    claimed = CreditAccount.objects.filter(
        Q(low_balance_alerted_at__isnull=True) | Q(low_balance_alerted_at__lt=entry.created_at),
        pk=account_id,
    ).update(low_balance_alerted_at=timezone.now())
    if not claimed:
        return False
    account = CreditAccount.objects.select_related("organization").get(pk=account_id)
    recipients = account.organization.billing_contacts()
    if not recipients:
        return False
    context = {
        "account": account,
        "organization": account.organization,
        "runway": selectors.runway_days(account),
        "url": settings.SITE_URL + reverse("credits", args=[account.organization.slug]),
    }
    send_mail(
        subject=f"{account.organization.name} is running low on credits",
        message=render_to_string("credits/email/low_balance.txt", context),
        from_email=None,
        recipient_list=recipients,
    )
    return True


def credit_recharge_failed_alert_send(*, recharge_id: int) -> bool:
    """Tell the billing contacts that a recharge failed and auto-recharge is now off."""
    recharge = (
        CreditRecharge.objects.select_related("account__organization", "package")
        .filter(pk=recharge_id, status=RechargeStatus.FAILED)
        .first()
    )
    if recharge is None:
        return False
    organization = recharge.account.organization
    recipients = organization.billing_contacts()
    if not recipients:
        return False
    context = {
        "recharge": recharge,
        "organization": organization,
        "url": settings.SITE_URL + reverse("credits", args=[organization.slug]),
    }
    send_mail(
        subject=f"{organization.name}: credits auto-recharge failed and is now off",
        message=render_to_string("credits/email/recharge_failed.txt", context),
        from_email=None,
        recipient_list=recipients,
    )
    return True
