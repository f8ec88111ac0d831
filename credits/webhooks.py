"""How a credit package's checkout ended, and what became of the payments that bought credits,
as billing heard it from Stripe: grant once paid, wait while a bank debit is processing, record
an expired or refused checkout; take back what a refund or a lost dispute revokes, hold back
what an open dispute contests.

Billing owns every Stripe event and re-reads the object before calling here; credits registers
these handlers with billing's one registry on import (from `CreditsConfig.ready()`). Every service here is
safe to run again and in any order.
"""

from billing.gateway.payments import CheckoutResult, PaymentCheckoutOutcome, payment_checkout_register
from billing.webhooks.registry import on
from credits import services
from credits.models import PurchaseStatus


def purchase_checkout_settled(outcome: PaymentCheckoutOutcome) -> None:
    code = outcome.metadata.get("tally_credit_purchase")
    if not code:
        return  # another app's payment checkout
    if outcome.result == CheckoutResult.PAID:
        purchase = services.credit_purchase_complete(
            purchase_code=code, session_id=outcome.session_id, payment_intent_id=outcome.payment_intent_id
        )
        if purchase is not None and outcome.payment_intent_id and outcome.amount_refunded:
            # A refund handled before the purchase was completed found nothing to take back.
            services.credit_purchase_refunded(
                payment_intent_id=outcome.payment_intent_id, amount_refunded=outcome.amount_refunded
            )
    elif outcome.result == CheckoutResult.PROCESSING:
        services.credit_purchase_processing(purchase_code=code, session_id=outcome.session_id)
    elif outcome.result == CheckoutResult.ABANDONED:
        services.credit_purchase_end(
            purchase_code=code, session_id=outcome.session_id, status=PurchaseStatus.ABANDONED
        )
    elif outcome.result == CheckoutResult.FAILED:
        services.credit_purchase_end(
            purchase_code=code,
            session_id=outcome.session_id,
            status=PurchaseStatus.FAILED,
            failure_message=outcome.failure_message,
        )


def _id(value) -> str:
    return value if isinstance(value, str) else getattr(value, "id", "") or ""


@on("charge.refunded", reread=True)
def charge_refunded(*, kind: str, obj) -> None:
    services.credit_purchase_refunded(
        payment_intent_id=_id(obj.payment_intent), amount_refunded=obj.amount_refunded
    )


@on("charge.dispute", reread=True)
def charge_disputed(*, kind: str, obj) -> None:
    services.credit_dispute_record(
        dispute_id=obj.id,
        payment_intent_id=_id(obj.payment_intent) or _id(getattr(obj.charge, "payment_intent", None)),
        amount=obj.amount,
        currency=obj.currency,
        stripe_status=obj.status,
        reason=obj.reason or "",
    )


@on("payment_intent.succeeded")
def payment_succeeded(*, kind: str, object_id: str) -> None:
    """A recharge the cardholder confirmed with their bank, re-read from Stripe (any other
    payment is left alone)."""
    services.credit_recharge_confirm_check_by_intent(payment_intent_id=object_id)


payment_checkout_register(purchase_checkout_settled)
