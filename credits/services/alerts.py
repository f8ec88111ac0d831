"""Emails about credits: the low-balance alert and a failed auto-recharge, to the billing
contacts. Billing records, dedupes and sends them (its notices, one layout, the contacts'
settings); credits says what they say."""

from django.conf import settings
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from billing.models import Notice, NoticeKind
from billing.notifications import Email, notice_builder_register, notice_send_now
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
    key = f"{account_id}:{transaction_id}"
    if (
        not claimed
        and not Notice.objects.filter(
            key=f"{NoticeKind.LOW_CREDITS}:{key}", status=Notice.Status.PENDING
        ).exists()
    ):
        return False  # told already (or a later crossing is); a pending one is this task's retry
    account = CreditAccount.objects.select_related("organization").get(pk=account_id)
    notice = notice_send_now(
        organization=account.organization,
        kind=NoticeKind.LOW_CREDITS,
        key=key,
        data={"account": account_id},
    )
    return notice is not None and Notice.objects.filter(pk=notice.pk, status=Notice.Status.SENT).exists()


def _low_balance(notice: Notice) -> Email | None:
    account = CreditAccount.objects.filter(pk=notice.data.get("account")).first()
    if account is None:
        return None
    organization = notice.organization
    return Email(
        subject=f"{organization.name} is running low on credits",
        template="credits/email/low_balance.txt",
        context={"account": account, "runway": selectors.runway_days(account)},
        action_label="Top up or change the alert",
        action_url=settings.SITE_URL + reverse("credits", args=[organization.slug]),
    )


def credit_recharge_failed_alert_send(*, recharge_id: int) -> bool:
    """Tell the billing contacts that a recharge failed (or asks for authentication) and
    auto-recharge is now off."""
    recharge = (
        CreditRecharge.objects.select_related("account__organization")
        .filter(pk=recharge_id, status=RechargeStatus.FAILED)
        .first()
    )
    if recharge is None:
        return False
    notice = notice_send_now(
        organization=recharge.account.organization,
        kind=NoticeKind.RECHARGE_FAILED,
        key=str(recharge.code),
        data={"recharge": recharge.pk},
    )
    return notice is not None and Notice.objects.filter(pk=notice.pk, status=Notice.Status.SENT).exists()


def _recharge_failed(notice: Notice) -> Email | None:
    recharge = CreditRecharge.objects.select_related("package").filter(pk=notice.data.get("recharge")).first()
    if recharge is None:
        return None
    organization = notice.organization
    asks = recharge.failure_code == "authentication_required"
    return Email(
        subject=(
            f"{organization.name}: your bank asks you to confirm a credits auto-recharge"
            if asks
            else f"{organization.name}: credits auto-recharge failed and is now off"
        ),
        template="credits/email/recharge_failed.txt",
        context={"recharge": recharge, "asks_authentication": asks},
        action_label="Confirm the payment" if asks else "Update the card or buy credits",
        # Asked to authenticate: the link leads to where this very payment is confirmed.
        action_url=settings.SITE_URL
        + (
            reverse("credits_recharge", args=[organization.slug, recharge.code])
            if asks
            else reverse("credits", args=[organization.slug])
        ),
    )


def _recharge_succeeded(notice: Notice) -> Email | None:
    recharge = (
        CreditRecharge.objects.select_related("package", "account")
        .filter(pk=notice.data.get("recharge"), status=RechargeStatus.SUCCEEDED)
        .first()
    )
    if recharge is None:
        return None  # refunded or reversed before this ran
    organization = notice.organization
    return Email(
        subject=f"{organization.name}: credits auto-recharge done",
        template="credits/email/recharge_succeeded.txt",
        context={"recharge": recharge, "balance": recharge.account.balance},
        action_label="See your credits",
        action_url=settings.SITE_URL + reverse("credits", args=[organization.slug]),
    )


notice_builder_register(NoticeKind.LOW_CREDITS, _low_balance)
notice_builder_register(NoticeKind.RECHARGE_SUCCEEDED, _recharge_succeeded)
notice_builder_register(NoticeKind.RECHARGE_FAILED, _recharge_failed)
