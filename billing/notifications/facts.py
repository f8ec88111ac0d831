"""Where billing learns the facts that notices tell of."""

from billing import pricing
from billing.models import (
    Notice,
    NoticeKind,
    OrgSubscription,
    Payment,
    Plan,
    PlanLineItem,
    PriceMigration,
    SubscriptionDuplicate,
)
from billing.notifications.notices import notice_queue
from teams.models import Organization

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
    elif payment.status == Payment.Status.FAILED and (reason := _first_debit_failure(payment, invoice)):
        # No access was ever granted, so "update your card before access is restricted" is
        # wrong: the one notice is the failed debit's, under the key the checkout's event uses.
        async_payment_failed_queue(
            organization=organization,
            key=payment.stripe_invoice_id,
            amount=payment.amount_due,
            currency=payment.currency,
            reason=reason,
            what="subscription",
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


# Stripe's delayed-notification methods: their payments are `processing` until the bank answers.
DELAYED_METHODS = frozenset({"acss_debit", "au_becs_debit", "bacs_debit", "sepa_debit", "us_bank_account"})


def _first_debit_failure(payment: Payment, invoice) -> str:
    """The bank's reason when the first invoice of a subscription, paid by a delayed method,
    failed (the subscription never started); "" for any other failure."""
    if payment.billing_reason != "subscription_create":
        return ""
    for record in (invoice.get("payments") or {}).get("data") or []:
        intent = (record.get("payment") or {}).get("payment_intent")
        error = (getattr(intent, "get", None) and intent.get("last_payment_error")) or {}
        if (error.get("payment_method") or {}).get("type") in DELAYED_METHODS:
            return error.get("message") or "The bank refused the payment."
    return ""


def async_payment_failed_queue(
    *, organization: Organization, key: str, amount: int, currency: str, reason: str, what: str
) -> Notice | None:
    """A payment by a delayed method (a bank debit) that failed, once per fact: a purchase's
    Checkout Session, or a subscription's first invoice (which its Checkout's event and the
    invoice's event both tell of)."""
    return notice_queue(
        organization=organization,
        kind=NoticeKind.ASYNC_PAYMENT_FAILED,
        key=key,
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
