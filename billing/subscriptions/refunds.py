"""Refunds Stripe reports, from Tally's money-back action or from the dashboard."""

from django.db import transaction

from billing.gateway.client import stripe_client
from billing.models import (
    Payment,
)
from billing.notifications import refund_notice_queue
from billing.webhooks import registry
from billing.webhooks.registry import on
from teams.services import audit_record


def charge_refunded(*, charge_id: str) -> Payment | None:
    """Record a refund (from Tally's money-back action or from the Stripe dashboard).

    A refunded payment for credits (a package or an auto-recharge) has credits take back what
    remains of them: credits registers for the re-read charge and finds its purchase by the
    charge's PaymentIntent.
    """
    charge = stripe_client().v1.charges.retrieve(charge_id)
    registry.stripe_event_notify("charge.refunded", charge)
    with transaction.atomic():
        payment = Payment.objects.select_for_update().filter(stripe_charge_id=charge_id).first()
        if payment is None:
            return None
        payment.amount_refunded = min(charge.amount_refunded, payment.amount_paid)
        payment.status = (
            Payment.Status.REFUNDED
            if payment.amount_refunded >= payment.amount_paid
            else Payment.Status.PARTIALLY_REFUNDED
        )
        payment.save(update_fields=["amount_refunded", "status"])
        refund_notice_queue(payment=payment)
        audit_record(
            organization=payment.organization,
            action="billing.refund_recorded",
            target=payment.number or payment.stripe_invoice_id,
            data={"amount_refunded": payment.amount_refunded},
        )
    return payment


@on("charge.refunded")
def _charge_refunded(*, kind: str, object_id: str) -> None:
    charge_refunded(charge_id=object_id)
