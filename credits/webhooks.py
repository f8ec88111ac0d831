"""The Stripe events credits applies, registered with billing's hooks (billing imports nothing
from credits). Each gets the object billing re-read from Stripe; every service here is safe to
run again and in any order."""

from billing import hooks
from credits import services


def _id(value) -> str:
    return value if isinstance(value, str) else getattr(value, "id", "") or ""


def checkout_paid(*, kind: str, obj) -> None:
    """A paid Checkout Session for a credit package grants it, once per session."""
    code = (obj.metadata or {}).get("tally_credit_purchase")
    if not code:
        return
    intent = _id(obj.payment_intent)
    purchase = services.credit_purchase_complete(
        purchase_code=code, session_id=obj.id, payment_intent_id=intent
    )
    charge = getattr(obj.payment_intent, "latest_charge", None)
    refunded = getattr(charge, "amount_refunded", 0) if not isinstance(charge, str) else 0
    if purchase is not None and intent and refunded:
        # A refund handled before the purchase was completed found nothing to take back.
        services.credit_purchase_refunded(payment_intent_id=intent, amount_refunded=refunded)


def charge_refunded(*, kind: str, obj) -> None:
    services.credit_purchase_refunded(
        payment_intent_id=_id(obj.payment_intent), amount_refunded=obj.amount_refunded
    )


def charge_disputed(*, kind: str, obj) -> None:
    services.credit_dispute_record(
        dispute_id=obj.id,
        payment_intent_id=_id(obj.payment_intent) or _id(getattr(obj.charge, "payment_intent", None)),
        amount=obj.amount,
        currency=obj.currency,
        stripe_status=obj.status,
        reason=obj.reason or "",
    )


def register() -> None:
    hooks.stripe_event_register(["checkout.session.completed"], checkout_paid)
    hooks.stripe_event_register(["charge.refunded"], charge_refunded)
    hooks.stripe_event_register(["charge.dispute"], charge_disputed)
