"""Credits in and out through the ledger: grants, consumption, refunds, adjustments."""

import uuid
from datetime import datetime

from django.db import transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from common.digest import matching
from common.errors import ServiceError
from credits.models import (
    CreditAccount,
    CreditAllocation,
    CreditDispute,
    CreditGrant,
    CreditTransaction,
    DisputeStatus,
    GrantSource,
    TransactionType,
)
from credits.services.accounts import credit_account_for
from credits.services.debits import _debit
from credits.services.expiry import credit_grants_expire_due
from credits.services.ledger import _account_move, _credit, _replay
from credits.services.prices import _resolve_amount
from credits.services.validation import _check_amount, _check_key, _text
from teams.models import Organization, User
from teams.services import audit_record


def credits_granted(*, organization: Organization, idempotency_key: str) -> bool:
    """Whether a ledger line with this key exists: a cheap look before a replay would."""
    return matching(
        CreditTransaction.objects, organization_id=organization.pk, idempotency_key=idempotency_key
    ).exists()


def credits_grant(
    *,
    organization: Organization,
    amount: int,
    source: str,
    idempotency_key: str,
    expires_at: datetime | None = None,
    priority: int | None = None,
    description: str = "",
    reference_type: str = "",
    reference_id: str = "",
    metadata: dict | None = None,
    actor: User | None = None,
) -> CreditTransaction:
    """Add credits from `source`. Billing calls this for purchases and for a plan's monthly
    allowance (`source=subscription_allowance, expires_at=<period end>`)."""
    _check_amount(amount)
    if source not in GrantSource.values:
        raise ServiceError(
            "invalid_source", f"Choose one of: {', '.join(GrantSource.values)}.", field="source"
        )
    key = _check_key(idempotency_key)
    if expires_at is not None and expires_at <= timezone.now():
        raise ServiceError("invalid_expiry", "The expiry must be in the future.", field="expires_at")
    account = credit_account_for(organization=organization)
    return _credit(
        account_id=account.pk,
        amount=amount,
        type=TransactionType.for_source(source),
        source=source,
        idempotency_key=key,
        expires_at=expires_at,
        priority=priority,
        description=description or GrantSource(source).label,
        reference_type=reference_type,
        reference_id=reference_id,
        metadata=metadata,
        actor=actor,
    )


def credits_consume(
    *,
    organization: Organization,
    idempotency_key: str,
    amount: int | None = None,
    action: str = "",
    quantity: int = 1,
    description: str = "",
    reference_type: str = "",
    reference_id: str = "",
    metadata: dict | None = None,
    actor: User | None = None,
) -> CreditTransaction:
    """Spend `amount` credits, or the price of `quantity` units of `action`.

    Raises InsufficientCredits (402) and changes nothing when the account cannot cover it.
    Called again with the same key, returns the first call's ledger line without charging.
    """
    key = _check_key(idempotency_key)
    quote = _resolve_amount(amount=amount, action=action, quantity=quantity)
    return _debit(
        organization=organization,
        amount=quote.credits,
        type=TransactionType.CONSUMPTION,
        idempotency_key=key,
        quote=quote,
        description=description or (quote.price.description if quote.price else ""),
        reference_type=reference_type,
        reference_id=reference_id,
        metadata=metadata,
        actor=actor,
    )


def credits_refund(
    *,
    consumption: CreditTransaction,
    amount: int | None = None,
    reason: str = "",
    idempotency_key: str = "",
    actor: User | None = None,
) -> CreditTransaction:
    """Give back all or part of a consumption, to the grants it drew from.

    Credits whose grant has expired since come back as a new refund grant that does not expire.
    Refunds of one consumption never add up to more than it took.
    """
    original = consumption
    if original.type != TransactionType.CONSUMPTION:
        raise ServiceError("not_refundable", "Only a consumption can be refunded.")
    key = _check_key(idempotency_key or f"refund:{original.code}")
    if amount is not None:
        _check_amount(amount)
    with transaction.atomic():
        CreditAccount.objects.select_for_update().filter(organization_id=original.organization_id).first()
        earlier = _replay(CreditTransaction, organization_id=original.organization_id, key=key)
        if earlier is not None:
            return earlier
        refunds = CreditTransaction.objects.filter(refund_of=original)
        refundable = -original.amount - (refunds.aggregate(s=Sum("amount"))["s"] or 0)
        amount = refundable if amount is None else amount
        if amount <= 0 or amount > refundable:
            raise ServiceError(
                "refund_too_large",
                f"At most {refundable:,} credits of this consumption can still be refunded.",
                field="amount",
            )
        restored = dict(
            CreditAllocation.objects.filter(
                organization_id=original.organization_id, transaction__refund_of=original
            )
            .values_list("grant_id")
            .annotate(s=Sum("amount"))
            .values_list("grant_id", "s")
        )
        now = timezone.now()
        took = dict(original.draws())
        live = (
            CreditGrant.objects.filter(organization_id=original.organization_id, pk__in=took)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
            .order_by("-priority", "pk")
            .values_list("pk", flat=True)
        )
        rooms = [(grant_id, -took[grant_id] - restored.get(grant_id, 0)) for grant_id in live]
        entry = _credit(
            account_id=original.account_id,
            amount=amount,
            type=TransactionType.REFUND,
            source=GrantSource.REFUND,
            idempotency_key=key,
            description=_text(reason, 200) or f"Refund of {original.description or 'a consumption'}",
            reference_type="transaction",
            reference_id=str(original.code),
            refund_of=original,
            actor=actor,
            restore_to=rooms,
        )
        # Credits that went back into a grant whose payment was refunded or is disputed are
        # revoked or held back again, so a refunded purchase never comes back to life.
        _claims_settle(
            organization_id=original.organization_id,
            grant_ids=[grant_id for grant_id, _ in rooms],
            context={"consumption_refund": str(entry.code)},
        )
        return entry


def credits_adjust(
    *,
    organization: Organization,
    amount: int,
    reason: str,
    actor: User,
    idempotency_key: str = "",
    ip_address: str | None = None,
) -> CreditTransaction:
    """A staff correction, positive or negative, recorded in the ledger and the audit log."""
    if not actor.is_staff:
        raise ServiceError("staff_only", "Only staff adjust balances.", status=403)
    reason = _text(reason, 200)
    if not reason:
        raise ServiceError("reason_required", "Say why the balance is adjusted.", field="reason")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
        raise ServiceError("invalid_amount", "Give a non-zero whole number of credits.", field="amount")
    _check_amount(abs(amount))
    key = _check_key(idempotency_key or f"adjustment:{uuid.uuid4()}")
    account = credit_account_for(organization=organization)
    with transaction.atomic():
        if amount > 0:
            entry = _credit(
                account_id=account.pk,
                amount=amount,
                type=TransactionType.ADJUSTMENT,
                source=GrantSource.ADJUSTMENT,
                idempotency_key=key,
                description=reason,
                actor=actor,
            )
        else:
            entry = _debit(
                account_id=account.pk,
                amount=-amount,
                type=TransactionType.ADJUSTMENT,
                idempotency_key=key,
                description=reason,
                actor=actor,
            )
        if not entry.replayed:
            audit_record(
                organization=organization,
                action="credits.adjusted",
                actor=actor,
                target=str(entry.code),
                data={"amount": amount, "reason": reason, "balance_after": entry.balance_after},
                ip_address=ip_address,
            )
    return entry


def _grant_of(entry_id: int) -> CreditGrant | None:
    """The grant a purchase's ledger line created (none if it all repaid an overdraft)."""
    return CreditGrant.objects.filter(allocations__transaction_id=entry_id, allocations__amount__gt=0).first()


def _claims_settle(
    *, organization_id: int, grant_ids: list[int] | None = None, context: dict | None = None
) -> list[CreditTransaction]:
    """Bring the grants that refunds or disputes claim in line with those claims, and take back
    what can be taken. Call inside a transaction, with the account row locked.

    For each grant: of its revoked credits, those not taken back yet and still in it are owed;
    of what is left, an open dispute's credits are disputed; both are frozen (never drawn by
    ordinary spending). Owed credits are taken as far as open holds allow. Everything here is
    recomputed from the grant, its clawbacks and its disputes, so running it again is harmless,
    and credits that come back into a revoked grant (a refunded consumption) are taken again.
    """
    grants = (
        CreditGrant.objects.filter(organization_id=organization_id)
        .filter(Q(revoked__gt=0) | Q(owed__gt=0) | Q(disputed__gt=0) | Q(disputes__status=DisputeStatus.OPEN))
        .distinct()
        .order_by("pk")
    )
    if grant_ids is not None:
        grants = grants.filter(pk__in=grant_ids)
    entries = []
    settled = []
    for grant in grants:
        settled.append(grant.pk)
        clawed = -(
            CreditAllocation.objects.filter(
                organization_id=organization_id, grant=grant, transaction__type=TransactionType.CLAWBACK
            ).aggregate(s=Sum("amount"))["s"]
            or 0
        )
        contested = (
            CreditDispute.objects.filter(grant=grant, status=DisputeStatus.OPEN).aggregate(s=Sum("credits"))[
                "s"
            ]
            or 0
        )
        owed = max(0, min(grant.revoked - clawed, grant.remaining))
        disputed = max(0, min(contested, grant.remaining - owed))
        account = CreditAccount.objects.get(organization_id=organization_id)
        take = min(owed, max(0, account.balance - account.held))
        frozen = (owed - take + disputed) - (grant.owed + grant.disputed)
        if take == 0 and owed == grant.owed and disputed == grant.disputed:
            continue
        CreditGrant.objects.filter(pk=grant.pk).update(
            remaining=F("remaining") - take, owed=owed - take, disputed=disputed
        )
        moved = _account_move(organization_id=organization_id, balance=-take, purchased=-take, frozen=frozen)
        if take <= 0:
            continue
        source = CreditTransaction.objects.filter(
            allocations__grant=grant, allocations__amount__gt=0
        ).order_by("pk")
        source = source.first()
        not_recovered = grant.revoked - clawed - owed
        entry = CreditTransaction.objects.create(
            organization_id=organization_id,
            account_id=account.pk,
            type=TransactionType.CLAWBACK,
            amount=-take,
            balance_after=moved.balance,
            description=f"Refunded: {(source.description if source else '') or 'a purchase'}",
            reference_type="transaction" if source else "grant",
            reference_id=str(source.code if source else grant.code),
            # Clawbacks of a grant only ever add up: the running total names each one once.
            idempotency_key=f"clawback:{grant.code}:{clawed + take}",
            refund_of=source,
            metadata={**(context or {}), "not_recovered": not_recovered},
        )
        CreditAllocation.objects.create(
            organization_id=organization_id, transaction=entry, grant=grant, amount=-take
        )
        audit_record(
            organization=Organization.objects.get(pk=organization_id),
            action="credits.clawed_back",
            target=str(source.code if source else grant.code),
            data={
                **(context or {}),
                "credits": take,
                "still_owed": owed - take,
                "not_recovered": not_recovered,
            },
        )
        entries.append(entry)
    # What a dispute kept frozen in a grant that has passed its date since (an allowance whose
    # subscription ended early) is free again now: it expires at once, never spendable.
    credit_grants_expire_due(organization_id=organization_id, grant_ids=settled)
    return entries
