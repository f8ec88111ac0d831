"""Auto-recharge: the saved card charged off-session when the balance falls below the threshold."""

from datetime import timedelta

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from billing.gateway import payments
from billing.models import NoticeKind
from billing.notifications import notice_queue
from credits import tasks
from credits.models import (
    CreditAccount,
    CreditRecharge,
    GrantSource,
    RechargeStatus,
    TransactionType,
)
from credits.services.disputes import _disputes_apply
from credits.services.ledger import _credit
from teams.services import audit_record

# A pending recharge younger than this is being charged right now: leave it alone. Older, its
# worker died between the commit and the record, and it is charged again under the same key.
RECHARGE_IN_FLIGHT = timedelta(minutes=5)


# Stripe keeps an idempotency key for 24 hours: past this, a retry could charge a second time,
# so the recharge is closed as abandoned instead.
RECHARGE_RESUME_WINDOW = timedelta(hours=12)


def credit_recharge_charge(*, recharge: CreditRecharge) -> CreditRecharge:
    """Charge the saved card off-session for a pending `recharge`, and record the outcome.

    Called after the pending row is committed and never inside a transaction. The key
    `recharge-<code>` makes a retry (a redelivered task, a resumed recharge) return the first
    PaymentIntent instead of charging again. Errors other than a declined card (network, Stripe
    unavailable) propagate and leave the recharge pending, for the task to retry.
    """
    account = CreditAccount.objects.select_related("organization").get(pk=recharge.account_id)
    try:
        result = payments.payment_charge_saved_card(
            organization=account.organization,
            amount=recharge.amount,
            currency=recharge.currency,
            description=f"Credits auto-recharge: {recharge.package.name}",
            metadata={"tally_org_id": str(account.organization_id), "tally_recharge": str(recharge.code)},
            idempotency_key=f"recharge-{recharge.code}",
        )
    except payments.PaymentUnavailable as error:
        return credit_recharge_fail(recharge=recharge, code=error.code, message=error.message)
    if result.succeeded:
        return credit_recharge_succeed(recharge=recharge, payment_intent_id=result.payment_intent_id)
    return credit_recharge_fail(
        recharge=recharge,
        code=result.failure_code,
        message=result.failure_message,
        payment_intent_id=result.payment_intent_id,
    )


def credit_auto_recharge_start(*, account_id: int) -> CreditRecharge | None:
    """Start one recharge for an account that fell below its threshold, within its monthly limit.

    The account row is locked while the month's spending is summed and the pending row written,
    so two triggers cannot both pass the limit; the database also refuses a second pending row
    per organization, so there is never more than one recharge in flight. The card is charged after
    that commit. A pending recharge whose worker died is charged again with its own idempotency
    key, which Stripe answers with the first outcome.
    """
    month_start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    with transaction.atomic():
        account = (
            CreditAccount.objects.select_for_update(of=("self",))
            .select_related("auto_recharge_package")
            .get(pk=account_id)
        )
        in_flight = CreditRecharge.objects.filter(
            organization_id=account.organization_id, status=RechargeStatus.PENDING
        ).first()
        package = account.auto_recharge_package
        if in_flight is None and (
            not account.auto_recharge_enabled
            or package is None
            or account.balance >= account.auto_recharge_threshold
        ):
            return None
        if in_flight is None:
            spent = (
                CreditRecharge.objects.filter(
                    organization_id=account.organization_id,
                    created_at__gte=month_start,
                    status=RechargeStatus.SUCCEEDED,
                ).aggregate(s=Sum("amount"))["s"]
                or 0
            )
            snapshot = {
                "organization_id": account.organization_id,
                "account": account,
                "package": package,
                "credits": package.total_credits,
                "amount": package.unit_amount,
                "currency": package.currency,
            }
            if spent + package.unit_amount > account.auto_recharge_monthly_limit:
                return CreditRecharge.objects.create(
                    **snapshot,
                    status=RechargeStatus.SKIPPED,
                    failure_code="monthly_limit",
                    failure_message="This month's auto-recharge limit is reached.",
                    settled_at=timezone.now(),
                )
            recharge = CreditRecharge.objects.create(**snapshot)
    if in_flight is None:
        return credit_recharge_charge(recharge=recharge)  # after the commit, never inside it
    age = timezone.now() - in_flight.created_at
    if age < RECHARGE_IN_FLIGHT:
        return None  # another worker is charging it
    if age > RECHARGE_RESUME_WINDOW:
        return credit_recharge_fail(
            recharge=in_flight,
            code="abandoned",
            message="The recharge was interrupted; check the payments in Stripe before retrying.",
        )
    return credit_recharge_charge(recharge=in_flight)


def credit_recharges_resume() -> int:
    """Charge (or close) every recharge left pending past the in-flight window. Periodic."""
    stale = CreditRecharge.objects.filter(
        status=RechargeStatus.PENDING, created_at__lt=timezone.now() - RECHARGE_IN_FLIGHT
    )
    return sum(
        credit_auto_recharge_start(account_id=a) is not None
        for a in stale.values_list("account_id", flat=True)
    )


def credit_recharge_succeed(*, recharge: CreditRecharge, payment_intent_id: str = "") -> CreditRecharge:
    """The payment went through: grant the package's credits (once, whatever the retries)."""
    return _recharge_grant(
        recharge=recharge, payment_intent_id=payment_intent_id, status=RechargeStatus.PENDING
    )


def credit_recharge_confirm_start(*, recharge: CreditRecharge, return_url: str) -> str:
    """The cardholder came to confirm a recharge their bank asked them to authenticate: confirm
    its PaymentIntent on session. Returns where to send them (the bank's step, which comes back
    to `return_url`), or "" when nothing waits for them (the payment went through: granted)."""
    if not recharge.awaits_authentication:
        return ""
    result = payments.payment_confirm_on_session(
        payment_intent_id=recharge.payment_intent_id, return_url=return_url
    )
    if result.status == "succeeded":
        credit_recharge_confirmed(payment_intent_id=recharge.payment_intent_id)
    return result.redirect_url


def credit_recharge_confirm_check(*, recharge: CreditRecharge) -> CreditRecharge:
    """Back from the bank's step: Stripe is asked how the payment stands (never the redirect's
    query), and a payment that went through is granted."""
    if recharge.awaits_authentication:
        result = payments.payment_intent_read(payment_intent_id=recharge.payment_intent_id)
        if result.status == "succeeded":
            credit_recharge_confirmed(payment_intent_id=recharge.payment_intent_id)
    recharge.refresh_from_db()
    return recharge


def credit_recharge_confirm_check_by_intent(*, payment_intent_id: str) -> CreditRecharge | None:
    """`payment_intent.succeeded`: if the payment is a recharge waiting for its cardholder."""
    recharge = CreditRecharge.objects.filter(payment_intent_id=payment_intent_id).first()
    if recharge is None or not recharge.awaits_authentication:
        return recharge
    return credit_recharge_confirm_check(recharge=recharge)


def credit_recharge_confirmed(*, payment_intent_id: str) -> CreditRecharge | None:
    """A recharge's payment, off session refused for authentication, went through once the
    cardholder confirmed it (their return, or `payment_intent.succeeded` re-read from Stripe,
    in any order and any number of times): its credits are granted once."""
    recharge = CreditRecharge.objects.filter(payment_intent_id=payment_intent_id).first()
    if recharge is None or not recharge.awaits_authentication:
        return recharge
    return _recharge_grant(
        recharge=recharge, payment_intent_id=payment_intent_id, status=RechargeStatus.FAILED
    )


def _recharge_grant(*, recharge: CreditRecharge, payment_intent_id: str, status: str) -> CreditRecharge:
    """Grant the credits and mark the recharge succeeded if it still is in `status`."""
    with transaction.atomic():
        entry = _credit(
            account_id=recharge.account_id,
            amount=recharge.credits,
            type=TransactionType.PURCHASE,
            source=GrantSource.PURCHASE,
            idempotency_key=f"recharge:{recharge.code}",
            description=f"Auto-recharge: {recharge.package.name}",
            reference_type="recharge",
            reference_id=str(recharge.code),
        )
        settled = CreditRecharge.objects.filter(pk=recharge.pk, status=status, transaction=None).update(
            status=RechargeStatus.SUCCEEDED,
            transaction=entry,
            payment_intent_id=payment_intent_id or recharge.payment_intent_id,
            settled_at=timezone.now(),
        )
        if settled:
            # Keyed by the recharge: a retried charge or a replayed event tells of it once.
            notice_queue(
                organization=recharge.account.organization,
                kind=NoticeKind.RECHARGE_SUCCEEDED,
                key=str(recharge.code),
                data={"recharge": recharge.pk},
            )
    recharge.refresh_from_db()
    if recharge.payment_intent_id:
        _disputes_apply(payment_intent_id=recharge.payment_intent_id)
    return recharge


def credit_recharge_fail(
    *, recharge: CreditRecharge, code: str, message: str = "", payment_intent_id: str = ""
) -> CreditRecharge:
    """The charge did not go through: turn auto-recharge off (it would only fail again), record
    it in the audit log and email the billing contacts once."""
    with transaction.atomic():
        failed = CreditRecharge.objects.filter(pk=recharge.pk, status=RechargeStatus.PENDING).update(
            status=RechargeStatus.FAILED,
            failure_code=code[:60],
            failure_message=message[:255],
            payment_intent_id=payment_intent_id or recharge.payment_intent_id,
            settled_at=timezone.now(),
        )
        if failed:
            account = CreditAccount.objects.select_related("organization").get(pk=recharge.account_id)
            CreditAccount.objects.filter(pk=account.pk).update(auto_recharge_enabled=False)
            audit_record(
                organization=account.organization,
                action="credits.auto_recharge_failed",
                target=str(recharge.code),
                data={"code": code, "message": message[:255], "amount": recharge.amount},
            )
            tasks.send_recharge_failed_alert.delay_on_commit(recharge.pk)
    recharge.refresh_from_db()
    return recharge
