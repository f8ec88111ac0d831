"""Every email billing sends, through one function and one layout.

A notice is recorded (`notice_queue`) in the transaction that learnt the fact it tells of, under
a key that names the fact (an invoice's n-th failed attempt, a trial's end, a dispute's state).
The key is unique in the database, so a duplicate delivery, a replay or a reconcile that learns
the same fact again records nothing and sends nothing. After the commit, Celery sends it
(`notice_send`): the subject and body of its kind, in the shared layout (plain text and HTML),
to the billing contacts (`Organization.billing_contacts()`, the one recipient rule) who have not
turned that kind off; critical kinds cannot be turned off.

The old task names (`billing.tasks.send_*`) still run, so messages queued under them before
the notices were recorded are sent (once, under the same keys).
"""

from collections.abc import Callable
from dataclasses import dataclass

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from billing import pricing
from billing.models import (
    Notice,
    NoticeKind,
    NoticePreference,
    OrgSubscription,
    Payment,
    PaymentDispute,
    Plan,
    PlanLineItem,
    PriceMigration,
    PriceVersion,
    SubscriptionDuplicate,
    UsageAlert,
)
from teams.models import Organization, User


@dataclass(frozen=True)
class Email:
    """What one notice says: its subject, the body template of its kind and the context, and the
    link that acts on it."""

    subject: str
    template: str
    context: dict
    action_label: str = ""
    action_url: str = ""
    also_to: tuple[str, ...] = ()


def notice_queue(
    *, organization: Organization, kind: str, key: str, data: dict | None = None
) -> Notice | None:
    """Record the notice `key` and send it after the commit; None when it was recorded before
    (the fact is already told)."""
    try:
        with transaction.atomic():
            notice = Notice.objects.create(
                organization=organization, kind=kind, key=f"{kind}:{key}", data=data or {}
            )
    except IntegrityError:
        return None
    deliver_notice.delay_on_commit(notice.pk)
    return notice


def notice_recipients(*, organization: Organization, kind: str) -> list[str]:
    """The billing contacts, less the members who turned this kind off (never a critical one)."""
    contacts = organization.billing_contacts()
    if kind in NoticeKind.critical():
        return contacts
    muted = {
        email
        for email, kinds in NoticePreference.objects.filter(organization=organization).values_list(
            "user__email", "muted"
        )
        if kind in (kinds or [])
    }
    # The billing address is not a member: it cannot mute anything, unless a member shares it.
    return [email for email in contacts if email not in muted]


def notice_send(*, notice_id: int) -> Notice | None:
    """Send a recorded notice once: the claim (a conditional update) comes before the email and
    is undone if the mail server is away, so the task's retry sends it."""
    claimed = Notice.objects.filter(pk=notice_id, status=Notice.Status.PENDING).update(
        status=Notice.Status.SENDING
    )
    if not claimed:
        return None
    notice = Notice.objects.select_related("organization").get(pk=notice_id)
    email = _BUILDERS[notice.kind](notice)
    recipients = []
    if email is not None:
        wanted = notice_recipients(organization=notice.organization, kind=notice.kind)
        recipients = sorted(set(wanted) | set(email.also_to))
    if email is None or not recipients:
        # Nothing to tell any more (paid before this ran) or nobody to tell it to.
        Notice.objects.filter(pk=notice_id).update(status=Notice.Status.SKIPPED, sent_at=timezone.now())
        return notice
    organization = notice.organization
    context = {
        **email.context,
        "organization": organization,
        "action_label": email.action_label,
        "action_url": email.action_url,
        "critical": notice.kind in NoticeKind.critical(),
        "settings_url": _url("billing_notices", organization),
        "site_url": settings.SITE_URL,
    }
    body = render_to_string(email.template, context)
    layout = {**context, "subject": email.subject, "body": body.strip()}
    try:
        send_mail(
            subject=email.subject,
            message=render_to_string("billing/email/base.txt", layout),
            html_message=render_to_string("billing/email/base.html", layout),
            from_email=None,
            recipient_list=recipients,
        )
    except OSError:
        Notice.objects.filter(pk=notice_id).update(status=Notice.Status.PENDING)
        raise
    Notice.objects.filter(pk=notice_id).update(
        status=Notice.Status.SENT, sent_at=timezone.now(), recipients=recipients, subject=email.subject
    )
    return notice


@shared_task(name="billing.tasks.deliver_notice", autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def deliver_notice(notice_id: int) -> None:
    notice_send(notice_id=notice_id)


def notice_preferences_update(
    *, organization: Organization, user: User, muted: list[str]
) -> NoticePreference:
    """Set the notices `user` does not want from `organization` (critical ones are always sent)."""
    optional = {kind.value for kind in NoticeKind.optional()}
    wanted = sorted(set(muted) & optional)
    preference, _ = NoticePreference.objects.update_or_create(
        organization=organization, user=user, defaults={"muted": wanted, "updated_at": timezone.now()}
    )
    return preference


def notice_muted(*, organization: Organization, user: User) -> set[str]:
    preference = NoticePreference.objects.filter(organization=organization, user=user).first()
    return set(preference.muted) if preference else set()


# --- What each kind says -------------------------------------------------------------------


def _url(name: str, organization: Organization) -> str:
    return settings.SITE_URL + reverse(name, args=[organization.slug])


def _payment(notice: Notice) -> Payment | None:
    return Payment.objects.filter(pk=notice.data.get("payment")).first()


def _subscription(notice: Notice) -> OrgSubscription | None:
    return OrgSubscription.objects.select_related("plan").filter(organization=notice.organization).first()


def _payment_failed(notice: Notice) -> Email | None:
    payment = _payment(notice)
    if payment is None or payment.status != Payment.Status.FAILED:
        return None  # paid (or refunded) before this ran: nothing to ask for
    subscription = _subscription(notice)
    organization = notice.organization
    return Email(
        subject=f"Payment failed for {organization.name}: please update your card",
        template="billing/email/payment_failed.txt",
        context={
            "payment": payment,
            "grace_days": settings.BILLING_GRACE_DAYS,
            "grace_until": subscription.grace_until if subscription else None,
        },
        action_label="Update the card",
        action_url=_url("billing", organization),
    )


def _payment_action_required(notice: Notice) -> Email | None:
    payment = _payment(notice)
    if payment is None or not payment.needs_authentication:
        return None  # authenticated (and paid) before this ran
    subscription = _subscription(notice)
    return Email(
        subject=f"{notice.organization.name}: your bank asks you to confirm a payment",
        template="billing/email/payment_action_required.txt",
        context={"payment": payment, "grace_until": subscription.grace_until if subscription else None},
        action_label="Confirm the payment",
        action_url=payment.hosted_invoice_url or _url("billing_invoices", notice.organization),
    )


def _receipt(notice: Notice) -> Email | None:
    payment = _payment(notice)
    if payment is None or not payment.amount_paid:
        return None
    return Email(
        subject=f"Receipt for {notice.organization.name}: {payment.number or payment.stripe_invoice_id}",
        template="billing/email/receipt.txt",
        context={
            "payment": payment,
            "subtotal": payment.total + payment.amount_discount - payment.amount_tax,
        },
        action_label="View the invoice",
        action_url=payment.hosted_invoice_url or _url("billing_invoices", notice.organization),
    )


def _trial_ending(notice: Notice) -> Email | None:
    subscription = _subscription(notice)
    if subscription is None or subscription.status != "trialing" or subscription.trial_end is None:
        return None  # ended or paid for before this ran
    return Email(
        subject=f"{notice.organization.name}: your trial ends on {subscription.trial_end:%-d %B}",
        template="billing/email/trial_ending.txt",
        context={"subscription": subscription},
        action_label="Review your plan",
        action_url=_url("billing", notice.organization),
    )


def _welcome(notice: Notice) -> Email | None:
    subscription = _subscription(notice)
    if subscription is None:
        return None
    return Email(
        subject=f"Welcome to {subscription.plan.name}, {notice.organization.name}",
        template="billing/email/welcome.txt",
        context={"subscription": subscription},
        action_label="Open billing",
        action_url=_url("billing", notice.organization),
    )


def _subscription_canceled(notice: Notice) -> Email | None:
    subscription = _subscription(notice)
    ended = notice.data.get("ended", False)
    if subscription is None:
        return None
    if not ended and not subscription.cancel_at_period_end:
        return None  # resumed before this ran
    what = "was canceled" if ended else "is scheduled to cancel"
    return Email(
        subject=f"{notice.organization.name}: your subscription {what}",
        template="billing/email/subscription_canceled.txt",
        context={"subscription": subscription, "ended": ended},
        action_label="Compare plans" if ended else "Keep your subscription",
        action_url=settings.SITE_URL + reverse("pricing") if ended else _url("billing", notice.organization),
    )


def _plan_changed(notice: Notice) -> Email | None:
    subscription = _subscription(notice)
    if subscription is None:
        return None
    return Email(
        subject=f"{notice.organization.name} is now on {notice.data.get('to_name', subscription.plan.name)}",
        template="billing/email/plan_changed.txt",
        context={"subscription": subscription, "data": notice.data},
        action_label="Open billing",
        action_url=_url("billing", notice.organization),
    )


def _refund(notice: Notice) -> Email | None:
    payment = _payment(notice)
    if payment is None:
        return None
    return Email(
        subject=f"{notice.organization.name}: a refund is on its way",
        template="billing/email/refund.txt",
        context={"payment": payment, "refunded": notice.data.get("amount_refunded", payment.amount_refunded)},
        action_label="See your invoices",
        action_url=_url("billing_invoices", notice.organization),
    )


def _dispute(notice: Notice) -> Email | None:
    record = PaymentDispute.objects.select_related("payment").filter(pk=notice.data.get("dispute")).first()
    if record is None:
        return None
    status = notice.data.get("status", record.status)
    verb = {"open": "disputed", "won": "dispute won", "lost": "dispute lost"}[status]
    staff = User.objects.filter(is_staff=True, is_active=True).values_list("email", flat=True)
    return Email(
        subject=f"{notice.organization.name}: payment {verb}",
        template="billing/email/dispute.txt",
        context={"dispute": record, "status": status, "grace_days": settings.BILLING_GRACE_DAYS},
        action_label="Open billing",
        action_url=_url("billing", notice.organization),
        also_to=tuple(staff),
    )


def _duplicate_refunded(notice: Notice) -> Email | None:
    duplicate = SubscriptionDuplicate.objects.filter(pk=notice.data.get("duplicate")).first()
    if duplicate is None:
        return None
    return Email(
        subject=f"{notice.organization.name}: a second subscription was canceled",
        template="billing/email/duplicate_subscription.txt",
        context={"duplicate": duplicate},
        action_label="Open billing",
        action_url=_url("billing", notice.organization),
    )


def _usage_alert(notice: Notice) -> Email | None:
    alert = UsageAlert.objects.select_related("feature").filter(pk=notice.data.get("alert")).first()
    if alert is None:
        return None
    return Email(
        subject=f"{notice.organization.name} has used {alert.threshold}% of its {alert.feature.name.lower()}",
        template="billing/email/usage_alert.txt",
        context={
            "alert": alert,
            "pricing_url": settings.SITE_URL + reverse("pricing"),
            "dashboard_url": settings.SITE_URL + notice.organization.get_absolute_url(),
        },
        action_label="Compare plans",
        action_url=settings.SITE_URL + reverse("pricing"),
    )


def _price_change(notice: Notice) -> Email | None:
    migration = (
        PriceMigration.objects.select_related("subscription__plan")
        .filter(pk=notice.data.get("migration"))
        .first()
    )
    if migration is None or migration.subscription.status not in {"active", "trialing", "past_due"}:
        return None  # canceled before this ran: no renewal to announce
    plan = migration.subscription.plan
    versions = {
        v.stripe_price_id: v
        for v in PriceVersion.objects.filter(
            stripe_price_id__in=[migration.from_price_id, migration.to_price_id]
        )
    }
    return Email(
        subject=f"{notice.organization.name}: {plan.name} has a new price from your renewal",
        template="billing/email/price_change.txt",
        context={
            "plan": plan,
            "old": versions.get(migration.from_price_id),
            "new": versions.get(migration.to_price_id),
            "currency": plan.currency,
            "renews_at": migration.renews_at,
        },
        action_label="Change or cancel your plan",
        action_url=_url("billing", notice.organization),
    )


def _async_payment_failed(notice: Notice) -> Email | None:
    data = notice.data
    return Email(
        subject=f"{notice.organization.name}: your bank debit did not go through",
        template="billing/email/async_payment_failed.txt",
        context={
            "amount": data.get("amount", 0),
            "currency": data.get("currency", "usd"),
            "reason": data.get("reason", ""),
            "subscription": data.get("what") == "subscription",
        },
        action_label="Try again with another payment method",
        action_url=(
            _url("billing", notice.organization)
            if data.get("what") == "subscription"
            else settings.SITE_URL + reverse("credits", args=[notice.organization.slug])
        ),
    )


def _seat_count_changed(notice: Notice) -> Email | None:
    subscription = _subscription(notice)
    if subscription is None:
        return None
    data = notice.data
    return Email(
        subject=f"{notice.organization.name} now pays for {data['to']} seats",
        template="billing/email/seat_count_changed.txt",
        context={"subscription": subscription, "data": data, "more": data["to"] > data["from"]},
        action_label="See your team and billing",
        action_url=_url("billing", notice.organization),
    )


_BUILDERS: dict[str, Callable[[Notice], Email | None]] = {
    NoticeKind.PAYMENT_FAILED: _payment_failed,
    NoticeKind.PAYMENT_ACTION_REQUIRED: _payment_action_required,
    NoticeKind.RECEIPT: _receipt,
    NoticeKind.TRIAL_ENDING: _trial_ending,
    NoticeKind.WELCOME: _welcome,
    NoticeKind.SUBSCRIPTION_CANCELED: _subscription_canceled,
    NoticeKind.PLAN_CHANGED: _plan_changed,
    NoticeKind.REFUND: _refund,
    NoticeKind.DISPUTE: _dispute,
    NoticeKind.DUPLICATE_REFUNDED: _duplicate_refunded,
    NoticeKind.USAGE_ALERT: _usage_alert,
    NoticeKind.PRICE_CHANGE: _price_change,
    NoticeKind.ASYNC_PAYMENT_FAILED: _async_payment_failed,
    NoticeKind.SEAT_COUNT_CHANGED: _seat_count_changed,
}


def notice_builder_register(kind: str, builder: Callable[[Notice], Email | None]) -> None:
    """Let an app above billing compose the notices of its own kinds (credits: low credits, a
    declined auto-recharge), from its AppConfig.ready(): `builder(notice)` returns the Email,
    or None when there is nothing to tell any more. Billing records, dedupes and sends them."""
    _BUILDERS[kind] = builder


def notice_kinds_offered() -> list[NoticeKind]:
    """The kinds a contact may turn off: the optional ones some app sends."""
    return [kind for kind in NoticeKind.optional() if kind in _BUILDERS]


def notice_kinds_always() -> list[NoticeKind]:
    """The kinds sent whatever the settings: the critical ones some app sends."""
    return [kind for kind in NoticeKind if kind in NoticeKind.critical() and kind in _BUILDERS]


# --- Where billing learns the facts --------------------------------------------------------


def invoice_notices_queue(*, payment: Payment, invoice, settled_now: bool) -> None:
    """The notices of a recorded invoice: a receipt once paid, a failure once per failed attempt,
    an authentication request once per attempt that asks for one. A receipt only when this
    recording is the one that saw it paid (`settled_now`): re-reading invoices paid long ago (a
    reconcile, a replay) sends no late receipts."""
    organization = payment.organization
    attempt = getattr(invoice, "attempt_count", 0) or 0
    data = {"payment": payment.pk}
    if payment.needs_authentication:
        notice_queue(
            organization=organization,
            kind=NoticeKind.PAYMENT_ACTION_REQUIRED,
            key=f"{payment.stripe_invoice_id}:{attempt}",
            data=data,
        )
    elif payment.status == Payment.Status.FAILED:
        notice_queue(
            organization=organization,
            kind=NoticeKind.PAYMENT_FAILED,
            key=f"{payment.stripe_invoice_id}:{attempt}",
            data=data,
        )
    elif payment.status == Payment.Status.PAID and payment.amount_paid > 0 and settled_now:
        notice_queue(
            organization=organization, kind=NoticeKind.RECEIPT, key=payment.stripe_invoice_id, data=data
        )


def subscription_notices_queue(*, subscription: OrgSubscription, previous: tuple | None) -> None:
    """The notices of a synced subscription: `previous` is (plan, status, cancel_at_period_end,
    Stripe subscription id) before the sync, None for one Tally had not tracked."""
    live = {"active", "trialing"}
    organization = subscription.organization
    stripe_id = subscription.stripe_subscription_id or f"local-{subscription.pk}"
    replaced = previous is not None and previous[3] != subscription.stripe_subscription_id
    if subscription.status in live and (
        previous is None or replaced or previous[1] not in live | {"past_due"}
    ):
        notice_queue(organization=organization, kind=NoticeKind.WELCOME, key=stripe_id)
    if previous is None or replaced:
        return
    plan, status, cancel_at_period_end, _ = previous
    if subscription.status == "canceled" and status != "canceled":
        notice_queue(
            organization=organization,
            kind=NoticeKind.SUBSCRIPTION_CANCELED,
            key=f"{stripe_id}:ended",
            data={"ended": True},
        )
    elif subscription.cancel_at_period_end and not cancel_at_period_end:
        end = int(subscription.current_period_end.timestamp()) if subscription.current_period_end else 0
        notice_queue(
            organization=organization,
            kind=NoticeKind.SUBSCRIPTION_CANCELED,
            key=f"{stripe_id}:at:{end}",
            data={"ended": False},
        )
    if plan is not None and plan.pk != subscription.plan_id and subscription.status in live | {"past_due"}:
        start = int(subscription.current_period_start.timestamp())
        notice_queue(
            organization=organization,
            kind=NoticeKind.PLAN_CHANGED,
            key=f"{stripe_id}:{plan.key}:{subscription.plan.key}:{start}",
            data={"from_name": plan.name, "to_name": subscription.plan.name},
        )


def refund_notice_queue(*, payment: Payment) -> None:
    """Once per refunded total of a payment. A second subscription's refund has its own notice."""
    if not payment.amount_refunded or (
        payment.stripe_subscription_id
        and SubscriptionDuplicate.objects.filter(
            stripe_subscription_id=payment.stripe_subscription_id
        ).exists()
    ):
        return
    notice_queue(
        organization=payment.organization,
        kind=NoticeKind.REFUND,
        key=f"{payment.stripe_invoice_id}:{payment.amount_refunded}",
        data={"payment": payment.pk, "amount_refunded": payment.amount_refunded},
    )


def price_change_queue(*, migration: PriceMigration) -> Notice | None:
    """Once per subscription and new price, however often the periodic job sees the move due."""
    subscription = migration.subscription
    return notice_queue(
        organization=subscription.organization,
        kind=NoticeKind.PRICE_CHANGE,
        key=f"{subscription.stripe_subscription_id or subscription.pk}:{migration.to_price_id}",
        data={"migration": migration.pk},
    )


def async_payment_failed_queue(
    *, organization: Organization, session_id: str, amount: int, currency: str, reason: str, what: str
) -> Notice | None:
    """A Checkout paid by a delayed method (a bank debit) whose payment failed: once per session."""
    return notice_queue(
        organization=organization,
        kind=NoticeKind.ASYNC_PAYMENT_FAILED,
        key=session_id,
        data={"amount": amount, "currency": currency, "reason": reason[:500], "what": what},
    )


def seat_count_changed_queue(
    *,
    subscription: OrgSubscription,
    plan: Plan,
    line: PlanLineItem,
    seats_from: int,
    seats_to: int,
    behavior: str,
) -> Notice | None:
    """A seat sync that changed Stripe's quantity: once per subscription, quantity and period
    (a retried sync, or the same count reached again in the period, tells nothing more)."""
    start = int(subscription.current_period_start.timestamp())
    return notice_queue(
        organization=subscription.organization,
        kind=NoticeKind.SEAT_COUNT_CHANGED,
        key=f"{subscription.stripe_subscription_id}:{seats_to}:{start}",
        data={
            "from": seats_from,
            "to": seats_to,
            "plan": plan.name,
            # What the seats come to per interval at the new count, by the line's tiers.
            "seats_total": pricing.price(
                quantity=seats_to,
                unit_amount=line.unit_amount,
                tiers=line.tiers,
                tiers_mode=line.tiers_mode or None,
            ).total,
            "currency": plan.currency,
            "proration_behavior": behavior,
        },
    )


def trial_ending_queue(*, subscription: OrgSubscription) -> None:
    if subscription.trial_end is None or subscription.status != "trialing":
        return
    notice_queue(
        organization=subscription.organization,
        kind=NoticeKind.TRIAL_ENDING,
        key=f"{subscription.stripe_subscription_id}:{int(subscription.trial_end.timestamp())}",
    )


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
