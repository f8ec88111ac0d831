"""Disputed payments that bought credits (a purchase, a recharge, or a plan period's allowance):
held back while open, given back or taken back when closed."""

from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Least
from django.utils import timezone

from billing.models import Payment, PaymentDispute
from credits.allowance_keys import allowance_key_parse
from credits.models import (
    CreditAccount,
    CreditDispute,
    CreditGrant,
    CreditPurchase,
    CreditRecharge,
    CreditTransaction,
    DisputeStatus,
    TransactionType,
)
from credits.services.spending import _claims_settle, _grant_of
from credits.services.validation import _text
from teams.services import audit_record


def credit_dispute_record(
    *,
    dispute_id: str,
    payment_intent_id: str,
    amount: int,
    currency: str,
    stripe_status: str,
    reason: str = "",
) -> CreditDispute | None:
    """A payment was disputed, or its dispute closed: hold back, give back or take back the
    credits it bought.

    Billing calls this for `charge.dispute.created` and `.closed` with the dispute re-read from
    Stripe. Every dispute is recorded (the purchase it concerns may not be completed yet: it is
    applied when it is); one that bought no credits changes nothing else. While open, the
    credits the disputed amount bought are frozen; won, they are released; lost, revoked and
    taken back like a refund's (owed while holds need them). Safe to run again, in any order.
    """
    if not dispute_id or not payment_intent_id:
        return None
    try:
        with transaction.atomic():
            record, _ = CreditDispute.objects.get_or_create(
                stripe_dispute_id=dispute_id,
                defaults={
                    "payment_intent_id": payment_intent_id,
                    "amount": max(amount, 0),
                    "currency": currency,
                    "reason": _text(reason, 60),
                    "stripe_status": stripe_status,
                },
            )
    except IntegrityError:
        record = CreditDispute.objects.get(stripe_dispute_id=dispute_id)
    # Statuses only move from open to closed: an older event never reopens a closed dispute.
    if stripe_status in ("won", "lost", "warning_closed"):
        CreditDispute.objects.filter(pk=record.pk).exclude(
            stripe_status__in=["won", "lost", "warning_closed"]
        ).update(stripe_status=stripe_status)
    _disputes_apply(payment_intent_id=payment_intent_id)
    return CreditDispute.objects.get(pk=record.pk)


def _disputes_apply(*, payment_intent_id: str) -> None:
    """Apply what Stripe says of the disputes of one payment to the grant it bought."""
    for dispute_id in CreditDispute.objects.filter(payment_intent_id=payment_intent_id).values_list(
        "pk", flat=True
    ):
        _dispute_apply(dispute_id)


def _dispute_apply(dispute_pk: int) -> None:
    dispute = CreditDispute.objects.get(pk=dispute_pk)
    if dispute.grant_id is None:
        bought = CreditPurchase.objects.filter(payment_intent_id=dispute.payment_intent_id).first()
        if bought is not None:
            paid, credits, entry_id, account_id = (
                bought.amount,
                bought.total_credits,
                bought.transaction_id,
                bought.account_id,
            )
        elif (
            bought := CreditRecharge.objects.filter(payment_intent_id=dispute.payment_intent_id).first()
        ) is not None:
            paid, credits, entry_id, account_id = (
                bought.amount,
                bought.credits,
                bought.transaction_id,
                bought.account_id,
            )
        elif (allowance := _allowance_paid_by(dispute)) is not None:
            paid, entry = allowance
            credits, entry_id, account_id = entry.amount, entry.pk, entry.account_id
        else:
            return  # not a payment for credits, or not completed (or granted) yet
        grant = _grant_of(entry_id) if entry_id else None
        if grant is None or paid <= 0:
            return
        share = -(-credits * min(dispute.amount, paid) // paid)  # ceiling division
        CreditDispute.objects.filter(pk=dispute.pk, grant__isnull=True).update(
            grant=grant,
            account_id=account_id,
            organization_id=grant.organization_id,
            credits=min(share, grant.amount),
        )
    wanted = {"won": DisputeStatus.WON, "warning_closed": DisputeStatus.WON, "lost": DisputeStatus.LOST}.get(
        dispute.stripe_status, DisputeStatus.OPEN
    )
    with transaction.atomic():
        dispute = CreditDispute.objects.select_related("grant", "account__organization").get(pk=dispute_pk)
        CreditAccount.objects.select_for_update().filter(organization_id=dispute.organization_id).first()
        grant = CreditGrant.objects.get(pk=dispute.grant_id)
        if wanted != DisputeStatus.OPEN and dispute.status == DisputeStatus.OPEN:
            CreditDispute.objects.filter(pk=dispute.pk, status=DisputeStatus.OPEN).update(
                status=wanted, closed_at=timezone.now()
            )
            if wanted == DisputeStatus.LOST:
                # The money is gone as surely as a refund's: the credits are revoked with it.
                CreditGrant.objects.filter(pk=grant.pk).update(
                    revoked=Least(F("revoked") + dispute.credits, F("amount"))
                )
            audit_record(
                organization=dispute.account.organization,
                action=f"credits.dispute_{wanted}",
                target=dispute.stripe_dispute_id,
                data={"credits": dispute.credits, "amount": dispute.amount},
            )
        elif dispute.status == DisputeStatus.OPEN and not grant.disputed:
            audit_record(
                organization=dispute.account.organization,
                action="credits.dispute_opened",
                target=dispute.stripe_dispute_id,
                data={"credits": dispute.credits, "amount": dispute.amount},
            )
        _claims_settle(
            organization_id=dispute.organization_id,
            grant_ids=[grant.pk],
            context={"dispute": dispute.stripe_dispute_id},
        )


def _allowance_paid_by(dispute: CreditDispute) -> tuple[int, CreditTransaction] | None:
    """The plan allowance that a disputed subscription payment paid for: the amount paid and the
    allowance's ledger line, once billing has recorded the payment and the period's grant exists."""
    payment = Payment.objects.filter(disputes__stripe_dispute_id=dispute.stripe_dispute_id).first()
    if payment is None or not payment.stripe_subscription_id or payment.period_start is None:
        return None
    entries = CreditTransaction.objects.filter(
        organization_id=payment.organization_id,
        type=TransactionType.ALLOWANCE,
        reference_id=payment.stripe_subscription_id,
        idempotency_key__startswith="allowance:",
    ).order_by("pk")
    start = int(payment.period_start.timestamp())
    end = int(payment.period_end.timestamp()) if payment.period_end else start + 1
    for entry in entries:
        parsed = allowance_key_parse(entry.idempotency_key)
        if parsed and parsed[0] == payment.stripe_subscription_id and start <= parsed[1] < end:
            return payment.amount_paid, entry
    return None


def credit_allowance_disputes_apply(*, subscription_id: str) -> None:
    """A period's allowance was just granted: apply the disputes of the subscription's payments
    that were heard of before it (a dispute can come before the period's grant)."""
    disputed = PaymentDispute.objects.filter(payment__stripe_subscription_id=subscription_id).values_list(
        "stripe_dispute_id", flat=True
    )
    for dispute_id in CreditDispute.objects.filter(
        stripe_dispute_id__in=list(disputed), grant__isnull=True
    ).values_list("pk", flat=True):
        _dispute_apply(dispute_id)
