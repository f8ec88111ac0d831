"""What each kind of notice says: its subject, its body and the link it leads to."""

from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.urls import reverse

from billing.models import (
    Notice,
    NoticeKind,
    OrgSubscription,
    Payment,
    PaymentDispute,
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
