"""What Stripe says about the payments of a subscription: paid and failed invoices, refunds, disputes."""

from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.gateway.client import stripe_client
from billing.gateway.invoices import invoice_lines_all
from billing.models import (
    DisputeState,
    OrgSubscription,
    Payment,
    PaymentDispute,
    SubscriptionStatus,
)
from billing.notifications import dispute_notice_queue, invoice_notices_queue
from billing.subscriptions.remote import _charge_of, _invalidate_on_commit, _organization_of, _ts
from billing.subscriptions.sync import subscription_sync
from billing.webhooks import registry
from billing.webhooks.registry import on
from teams.models import Organization
from teams.services import audit_record


def invoice_record(*, invoice_id: str) -> Payment | None:
    """Record a paid or failed invoice in the payment history, then resync its subscription
    (a paid renewal starts a new period; a failed payment starts the grace period)."""
    client = stripe_client()
    invoice = client.v1.invoices.retrieve(invoice_id, {"expand": ["payments.data.payment.payment_intent"]})
    organization = _organization_of(None, invoice.customer)
    if organization is None:
        return None
    charge_id = _charge_of(invoice)
    subscription_id = ((invoice.get("parent") or {}).get("subscription_details") or {}).get("subscription")
    lines = invoice_lines_all(invoice, client=client)
    status = Payment.Status.PAID if invoice.status == "paid" else Payment.Status.FAILED
    paid_at = _ts((invoice.get("status_transitions") or {}).get("paid_at"))
    values = {
        "organization": organization,
        "stripe_charge_id": charge_id or "",
        "stripe_subscription_id": subscription_id or "",
        "number": invoice.number or "",
        "description": lines[0].description if lines else "",
        "billing_reason": invoice.billing_reason or "",
        "amount_due": invoice.amount_due,
        "amount_paid": invoice.amount_paid,
        "amount_discount": sum(d.amount for d in invoice.get("total_discount_amounts") or []),
        "amount_tax": sum(t.amount for t in invoice.get("total_taxes") or []),
        "currency": invoice.currency,
        "period_start": _ts(lines[0].period.start) if lines else None,
        "period_end": _ts(lines[0].period.end) if lines else None,
        "hosted_invoice_url": invoice.hosted_invoice_url or "",
        "invoice_pdf": invoice.invoice_pdf or "",
        "total": invoice.total,
        "lines": [
            {
                "description": line.description or "",
                "quantity": line.quantity,
                "amount": line.amount,
                "currency": line.currency,
                "period_start": line.period.start,
                "period_end": line.period.end,
            }
            for line in lines
        ],
        "needs_authentication": _awaits_authentication(invoice),
        "created_at": _ts(invoice.created),
        "paid_at": paid_at,
    }
    first_status, refunded = status, 0
    if (
        charge_id
        and status == Payment.Status.PAID
        and not Payment.objects.filter(stripe_invoice_id=invoice.id).exists()
    ):
        # Events come in any order: the charge may have been refunded (a duplicate subscription,
        # the dashboard) before this invoice is first heard of.
        refunded = min(client.v1.charges.retrieve(charge_id).amount_refunded, invoice.amount_paid)
        if refunded:
            first_status = (
                Payment.Status.REFUNDED
                if refunded >= invoice.amount_paid
                else Payment.Status.PARTIALLY_REFUNDED
            )
    with transaction.atomic():
        payment = Payment.objects.select_for_update().filter(stripe_invoice_id=invoice.id).first()
        created = settled_now = False
        if payment is None:
            try:
                with transaction.atomic():
                    payment = Payment.objects.create(
                        stripe_invoice_id=invoice.id, status=first_status, amount_refunded=refunded, **values
                    )
                    created = settled_now = True
            except IntegrityError:
                payment = Payment.objects.select_for_update().get(stripe_invoice_id=invoice.id)
        if not created:
            if payment.status in (Payment.Status.REFUNDED, Payment.Status.PARTIALLY_REFUNDED):
                status = payment.status  # a refund recorded earlier stays recorded
            wanted = {**values, "status": status}
            changed = [name for name, value in wanted.items() if getattr(payment, name) != value]
            for name in changed:
                setattr(payment, name, wanted[name])
            settled_now = "status" in changed
            if changed:  # a replayed event finds nothing to write
                payment.save(update_fields=changed)
        if (
            status == Payment.Status.PAID
            and PaymentDispute.objects.filter(organization=organization).exists()
        ):
            dispute_restriction_refresh(organization=organization)  # a later payment lifts a lost one
    local = (
        OrgSubscription.objects.filter(stripe_subscription_id=subscription_id).first()
        if subscription_id
        else None
    )
    # A paid invoice for a period Tally already has as active changes nothing: skip the call.
    current = (
        local is not None
        and status == Payment.Status.PAID
        and local.status == SubscriptionStatus.ACTIVE
        and local.grace_until is None
        and values["period_start"] is not None
        and local.current_period_start >= values["period_start"]
    )
    if subscription_id and not current:
        local = subscription_sync(subscription_id=subscription_id) or local
    already_marked = local is not None and local.first_paid_at is not None
    if status == Payment.Status.PAID and invoice.amount_paid > 0 and not already_marked:
        # The money-back window counts from the first payment, whichever event came first; a
        # duplicate subscription's payment (refunded) is not the tracked one's.
        tracked = OrgSubscription.objects.filter(organization=organization, first_paid_at__isnull=True)
        if subscription_id:
            tracked = tracked.filter(stripe_subscription_id=subscription_id)
        tracked.update(first_paid_at=paid_at or timezone.now())
    # Once per paid invoice and per failed (or authentication-asking) attempt, however often
    # Stripe tells of it: the notices' keys are unique.
    invoice_notices_queue(payment=payment, invoice=invoice, settled_now=settled_now)
    return payment


def _awaits_authentication(invoice) -> bool:
    """Whether the open invoice's current payment waits for the cardholder (3D Secure): Stripe
    cannot collect it, the customer can, on the hosted invoice page."""
    if invoice.status != "open":
        return False
    for record in (invoice.get("payments") or {}).get("data") or []:
        intent = (record.get("payment") or {}).get("payment_intent")
        if record.get("is_default") and getattr(intent, "status", None) == "requires_action":
            return True
    return False


def charge_disputed(*, dispute_id: str) -> PaymentDispute | None:
    """Record a dispute of one of the organization's payments (`charge.dispute.created` and
    `.closed`), re-read from Stripe so that any order of events ends the same.

    The apps above billing apply it to what the payment bought (credits holds back, gives back or
    takes back a purchase's credits). A disputed subscription payment restricts access like an
    unpaid invoice: full access for the grace period, then read-only until the dispute is won or
    a later invoice is paid. Staff and the owner are emailed once per state.
    """
    client = stripe_client()
    dispute = client.v1.disputes.retrieve(dispute_id, {"expand": ["charge"]})
    charge = dispute.charge
    organization = _organization_of(None, charge.customer)
    if organization is None:
        registry.stripe_event_notify("charge.dispute", dispute)
        return None
    payment = Payment.objects.filter(stripe_charge_id=charge.id).first()
    intent = (
        charge.payment_intent
        if isinstance(charge.payment_intent, str)
        else getattr(charge.payment_intent, "id", "")
    )
    if payment is None and intent:
        # The dispute can come before `invoice.paid`: find the invoice through its payments.
        found = client.v1.invoice_payments.list(
            {"payment": {"type": "payment_intent", "payment_intent": intent}}
        )
        for invoice_payment in found.data:
            invoice_record(invoice_id=invoice_payment.invoice)
        payment = Payment.objects.filter(stripe_charge_id=charge.id).first()
    state = DisputeState.of(dispute.status)
    with transaction.atomic():
        record, _ = PaymentDispute.objects.get_or_create(
            stripe_dispute_id=dispute.id,
            defaults={
                "organization": organization,
                "payment": payment,
                "stripe_charge_id": charge.id,
                "amount": dispute.amount,
                "currency": dispute.currency,
                "reason": dispute.reason or "",
                "opened_at": _ts(dispute.created) or timezone.now(),
            },
        )
        record = PaymentDispute.objects.select_for_update().get(pk=record.pk)
        changed = []
        if record.payment_id is None and payment is not None:
            record.payment, changed = payment, ["payment"]
        if record.status == DisputeState.OPEN and state != DisputeState.OPEN:
            record.status, record.closed_at = state, timezone.now()
            changed += ["status", "closed_at"]
        if changed:
            record.save(update_fields=changed)
            audit_record(
                organization=organization,
                action=f"billing.dispute_{record.status}",
                target=dispute.id,
                data={"amount": record.amount, "charge": charge.id, "reason": record.reason},
            )
        dispute_restriction_refresh(organization=organization)
        if record.notified_status != record.status:
            record.notified_status = record.status
            record.save(update_fields=["notified_status"])
        dispute_notice_queue(record=record)  # once per dispute and state: the notice's key
    # After the record, so that what the apps above look up (the disputed invoice's period, for
    # a plan's allowance) is there whichever came first, the dispute or `invoice.paid`.
    registry.stripe_event_notify("charge.dispute", dispute)
    return record


def dispute_restriction_refresh(*, organization: Organization) -> None:
    """Set when the organization's access turns read-only for its disputed subscription payments:
    the grace period after the earliest one still open, or lost and not followed by a later paid
    invoice; none when there is none."""
    latest_paid = (
        Payment.objects.filter(organization=organization, status=Payment.Status.PAID)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    due = []
    for record in PaymentDispute.objects.filter(
        organization=organization, payment__isnull=False
    ).select_related("payment"):
        if record.status == DisputeState.WON:
            continue
        if record.status == DisputeState.LOST and latest_paid and latest_paid > record.payment.created_at:
            continue
        due.append(record.opened_at + timedelta(days=settings.BILLING_GRACE_DAYS))
    until = min(due) if due else None
    if (
        OrgSubscription.objects.filter(organization=organization)
        .exclude(dispute_grace_until=until)
        .update(dispute_grace_until=until)
    ):
        _invalidate_on_commit(organization)


# --- Stripe events --------------------------------------------------------------------------


@on("invoice.paid", "invoice.payment_failed", "invoice.payment_action_required")
def _invoice_settled(*, kind: str, object_id: str) -> OrgSubscription | None:
    payment = invoice_record(invoice_id=object_id)
    if payment is not None and kind == "invoice.paid":
        return OrgSubscription.objects.filter(organization=payment.organization).first()
    return None


@on("charge.dispute.created", "charge.dispute.closed")
def _charge_disputed(*, kind: str, object_id: str) -> None:
    charge_disputed(dispute_id=object_id)
