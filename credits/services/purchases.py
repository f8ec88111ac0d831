"""Buying a credit package through Stripe Checkout, and what a refund of it takes back."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from billing.gateway import payments
from common.errors import ServiceError
from credits.models import (
    CreditAccount,
    CreditGrant,
    CreditPackage,
    CreditPurchase,
    CreditRecharge,
    CreditTransaction,
    GrantSource,
    PurchaseStatus,
    TransactionType,
)
from credits.services.accounts import credit_account_for
from credits.services.disputes import _disputes_apply
from credits.services.ledger import _credit
from credits.services.spending import _claims_settle, _grant_of
from credits.services.validation import _check_amount
from teams.models import Organization, User
from teams.services import audit_record


def credit_package_get(*, code: str) -> CreditPackage:
    """The active package named `code`, or a clear error naming the field."""
    package = CreditPackage.objects.filter(code=(code or "").strip(), is_active=True).first()
    if package is None:
        raise ServiceError("unknown_package", "Choose one of the packages on sale.", field="package")
    return package


def credit_purchase_start(
    *, organization: Organization, package: CreditPackage, actor: User | None
) -> tuple[CreditPurchase, str]:
    """Open a Stripe Checkout for `package`; returns the purchase and the URL to send the buyer to.

    The purchase is committed first, with the package as it is now, so the webhook grants what
    was shown and paid for even if staff change the package meanwhile. Stripe is called after the
    commit, with a key derived from the purchase, so a retried call opens the same session.
    """
    if not package.is_active:
        raise ServiceError("unknown_package", "Choose one of the packages on sale.", field="package")
    if package.unit_amount <= 0:
        raise ServiceError(
            "package_not_purchasable", f"{package.name} cannot be bought online.", field="package"
        )
    account = credit_account_for(organization=organization)
    purchase = CreditPurchase.objects.create(
        organization_id=organization.pk,
        account=account,
        package=package,
        credits=package.credits,
        bonus_credits=package.bonus_credits,
        amount=package.unit_amount,
        currency=package.currency,
        actor=actor,
    )
    page = settings.SITE_URL + reverse("credits", args=[organization.slug])
    metadata = {
        "tally_org_id": str(organization.pk),
        "tally_org": organization.slug,
        "tally_credit_purchase": str(purchase.code),
        "tally_package": package.code,
    }
    session = payments.payment_checkout_start(
        organization=organization,
        price=payments.OneTimePrice(
            key=f"credits_{package.code}",
            name=package.name,
            description=package.description,
            unit_amount=purchase.amount,
            currency=purchase.currency,
        ),
        metadata=metadata,
        success_url=page + f"?purchase=complete&code={purchase.code}",
        cancel_url=page + "?purchase=cancelled",
        idempotency_key=f"tally-credit-purchase-{purchase.code}",
    )
    CreditPurchase.objects.filter(pk=purchase.pk, checkout_session_id__isnull=True).update(
        checkout_session_id=session.id
    )
    CreditPackage.objects.filter(pk=package.pk).exclude(stripe_price_id=session.price_id).update(
        stripe_price_id=session.price_id
    )
    purchase.checkout_session_id = session.id
    audit_record(
        organization=organization,
        action="credits.purchase_started",
        actor=actor,
        target=package.code,
        data={"session": session.id, "credits": purchase.total_credits, "amount": purchase.amount},
    )
    return purchase, session.url


def credit_purchase_complete(
    *, purchase_code: str, session_id: str, payment_intent_id: str = ""
) -> CreditPurchase | None:
    """Grant a paid purchase's credits: once per Checkout Session, however often the webhook comes.

    Billing calls this for `checkout.session.completed` after re-reading the session from Stripe
    and seeing it paid. The grant's idempotency key is the session id, which the database keeps
    unique per organization; the purchase moves from pending to completed in the same transaction.
    """
    purchase = _purchase_of_session(purchase_code, session_id)
    if purchase is None:
        return None
    with transaction.atomic():
        entry = _credit(
            account_id=purchase.account_id,
            amount=purchase.total_credits,
            type=TransactionType.PURCHASE,
            source=GrantSource.PURCHASE,
            idempotency_key=f"purchase:{session_id}",
            description=purchase.package.name,
            reference_type="checkout_session",
            reference_id=session_id,
            metadata={
                "credits": purchase.credits,
                "bonus_credits": purchase.bonus_credits,
                "amount": purchase.amount,
                "currency": purchase.currency,
            },
            actor=purchase.actor,
        )
        # Stripe says it is paid (re-read by billing): whatever Tally thought before, it is bought.
        completed = (
            CreditPurchase.objects.filter(pk=purchase.pk)
            .exclude(status=PurchaseStatus.COMPLETED)
            .update(
                status=PurchaseStatus.COMPLETED,
                processing=False,
                transaction=entry,
                checkout_session_id=session_id,
                payment_intent_id=payment_intent_id or None,
                completed_at=timezone.now(),
            )
        )
        if completed:
            audit_record(
                organization=purchase.account.organization,
                action="credits.purchased",
                actor=purchase.actor,
                target=purchase.package.code,
                data={"session": session_id, "credits": purchase.total_credits, "amount": purchase.amount},
            )
    purchase.refresh_from_db()
    if purchase.payment_intent_id:
        _disputes_apply(payment_intent_id=purchase.payment_intent_id)  # one may have come first
    return purchase


def _purchase_of_session(purchase_code: str, session_id: str) -> CreditPurchase | None:
    try:
        purchase = (
            CreditPurchase.objects.select_related("package", "account__organization")
            .filter(code=purchase_code)
            .first()
        )
    except ValidationError:
        return None  # not a purchase code of ours
    if purchase is None or purchase.checkout_session_id not in (None, session_id):
        return None
    return purchase


def credit_purchase_processing(*, purchase_code: str, session_id: str) -> CreditPurchase | None:
    """The buyer paid with a delayed method (a bank debit): nothing is granted until the bank
    has paid; the purchase says it is waiting for that."""
    purchase = _purchase_of_session(purchase_code, session_id)
    if purchase is None:
        return None
    CreditPurchase.objects.filter(pk=purchase.pk, status=PurchaseStatus.PENDING, processing=False).update(
        processing=True, checkout_session_id=session_id
    )
    purchase.refresh_from_db()
    return purchase


def credit_purchase_end(
    *, purchase_code: str, session_id: str, status: str, failure_message: str = ""
) -> CreditPurchase | None:
    """A pending purchase that will never be paid: its checkout expired (abandoned) or its
    delayed payment was refused (failed, with the bank's reason). Grants nothing; only a pending
    purchase moves, once, so a replayed or late event changes nothing."""
    if status not in (PurchaseStatus.ABANDONED, PurchaseStatus.FAILED):
        raise ValueError(f"not an end of a purchase: {status}")
    purchase = _purchase_of_session(purchase_code, session_id)
    if purchase is None:
        return None
    ended = CreditPurchase.objects.filter(pk=purchase.pk, status=PurchaseStatus.PENDING).update(
        status=status,
        processing=False,
        failure_message=failure_message[:500],
        checkout_session_id=session_id,
        ended_at=timezone.now(),
    )
    if ended:
        audit_record(
            organization=purchase.account.organization,
            action=f"credits.purchase_{status}",
            actor=purchase.actor,
            target=purchase.package.code,
            data={"session": session_id, "reason": failure_message},
        )
    purchase.refresh_from_db()
    return purchase


def credit_purchase_refunded(*, payment_intent_id: str, amount_refunded: int) -> list[CreditTransaction]:
    """A payment for credits was refunded (in full or in part): take back what is left of them.

    Billing calls this for every `charge.refunded`; a payment that bought no credits is ignored.
    The credits revoked are proportional to the money refunded, rounded up. What is still in the
    grant is taken at once, except what open reservations hold: that is owed, frozen, and taken
    as soon as the holds settle (credits already spent stay spent). `amount_refunded` is the
    charge's total so far, so a replayed or late event takes only what is still owed.
    """
    if not payment_intent_id:
        return []
    purchase = CreditPurchase.objects.filter(payment_intent_id=payment_intent_id).first()
    model = CreditPurchase
    if purchase is not None:
        paid, credits, entry_id, row = (
            purchase.amount,
            purchase.total_credits,
            purchase.transaction_id,
            purchase,
        )
    else:
        row = CreditRecharge.objects.filter(payment_intent_id=payment_intent_id).first()
        if row is None:
            return []
        model = CreditRecharge
        paid, credits, entry_id = row.amount, row.credits, row.transaction_id
    refunded = min(max(amount_refunded, 0), paid)
    model.objects.filter(pk=row.pk, amount_refunded__lt=refunded).update(amount_refunded=refunded)
    if entry_id is None or paid <= 0:
        return []
    grant = _grant_of(entry_id)
    if grant is None:
        return []  # every credit of it repaid an overdraft: nothing left to take
    target = -(-credits * refunded // paid)  # ceiling division: integers only
    return credit_grant_refunded(grant=grant, credits=target, context={"amount_refunded": refunded})


def credit_grant_refunded(
    *, grant: CreditGrant, credits: int, context: dict | None = None
) -> list[CreditTransaction]:
    """`credits` of `grant` (in all, so far) were paid with money that went back: revoke them.

    A level, not an increment: calling it again with the same figure changes nothing.
    """
    credits = min(_check_amount(credits, field="credits", allow_zero=True), grant.amount)
    with transaction.atomic():
        CreditAccount.objects.select_for_update().filter(organization_id=grant.organization_id).first()
        CreditGrant.objects.filter(pk=grant.pk, revoked__lt=credits).update(revoked=credits)
        return _claims_settle(organization_id=grant.organization_id, grant_ids=[grant.pk], context=context)


def credit_package_push(package_id: int) -> None:
    """After staff saved a package in the admin: its price in Stripe (a changed amount is a new
    price under the package's lookup key; purchases already made keep theirs)."""
    package = CreditPackage.objects.filter(pk=package_id).first()
    if package is None or not package.is_active:
        return
    price_id = payments.one_time_price_ensure(
        price=payments.OneTimePrice(
            key=f"credits_{package.code}",
            name=package.name,
            description=package.description,
            unit_amount=package.unit_amount,
            currency=package.currency,
        )
    )
    CreditPackage.objects.filter(pk=package.pk).exclude(stripe_price_id=price_id).update(
        stripe_price_id=price_id
    )
