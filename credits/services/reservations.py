"""Holds on credits for work that may not finish: reserve, confirm with the real amount, cancel, expire."""

from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from common.errors import ServiceError
from credits import conf
from credits.models import (
    CreditAccount,
    CreditReservation,
    CreditTransaction,
    ReservationStatus,
    TransactionType,
)
from credits.services.accounts import credit_account_for
from credits.services.debits import (
    _after_debit,
    _allocations_write,
    _debit_entry,
    _grant_name,
    _grants_draw,
    _usage_roll_up,
    credits_spendable,
)
from credits.services.expiry import credit_grants_expire_due
from credits.services.ledger import _account_move, _check_same_request, _Refused, _replay, _replay_for_org
from credits.services.prices import _resolve_amount
from credits.services.spending import _claims_settle
from credits.services.validation import InsufficientCredits, _check_amount, _check_key, _text
from teams.models import Organization, User


def credit_reservation_create(
    *,
    organization: Organization,
    idempotency_key: str,
    amount: int | None = None,
    action: str = "",
    quantity: int = 1,
    ttl_seconds: int | None = None,
    description: str = "",
    reference_type: str = "",
    reference_id: str = "",
    metadata: dict | None = None,
    actor: User | None = None,
) -> CreditReservation:
    """Hold credits for an operation that will be confirmed or cancelled later."""
    key = _check_key(idempotency_key)
    quote = _resolve_amount(amount=amount, action=action, quantity=quantity)
    ttl = conf.reservation_ttl_seconds() if ttl_seconds is None else ttl_seconds
    if not isinstance(ttl, int) or not 1 <= ttl <= 24 * 3600:
        raise ServiceError(
            "invalid_ttl", "Hold credits for between 1 second and 24 hours.", field="ttl_seconds"
        )
    for _ in range(2):
        try:
            with transaction.atomic():
                account = _account_move(
                    organization_id=organization.pk, held=quote.credits, spend=quote.credits
                )
                if account is None:
                    raise _Refused
                return CreditReservation.objects.create(
                    organization_id=account.organization_id,
                    account_id=account.pk,
                    amount=quote.credits,
                    action=quote.action,
                    quantity=quote.quantity if quote.action else None,
                    price=quote.price,
                    description=_text(description, 200),
                    reference_type=_text(reference_type, 40),
                    reference_id=_text(reference_id, 100),
                    idempotency_key=key,
                    actor=actor,
                    metadata=metadata or {},
                    expires_at=timezone.now() + timedelta(seconds=ttl),
                )
        except IntegrityError:
            original = _replay_for_org(CreditReservation, organization=organization, key=key)
            if original is None:
                raise
            _check_same_request(original, amount=quote.credits, action=quote.action)
            return original
        except _Refused:
            account = credit_account_for(organization=organization)
            original = _replay(CreditReservation, organization_id=account.organization_id, key=key)
            if original is not None:
                _check_same_request(original, amount=quote.credits, action=quote.action)
                return original
            spendable = credits_spendable(account=account)
            if spendable < quote.credits:
                raise InsufficientCredits(
                    required=quote.credits, balance=account.balance, available=spendable
                ) from None
            # The account was created just now; the loop tries once more.
    raise InsufficientCredits(required=quote.credits, balance=0, available=0)


def _settled(reservation: CreditReservation, *, wanted: str) -> CreditReservation:
    """Answer a settle call on a reservation that is no longer held."""
    current = CreditReservation.objects.select_related("transaction").get(pk=reservation.pk)
    if current.status == wanted:
        current.replayed = True
        return current
    raise ServiceError(
        "reservation_closed",
        f"This reservation is already {current.get_status_display().lower()}.",
        status=409,
    )


def credit_reservation_confirm(
    *, reservation: CreditReservation, amount: int | None = None, quantity: int | None = None
) -> CreditReservation:
    """Consume `amount` (default: all) of the held credits and release the rest.

    `quantity` records the units really used when they differ from the estimate held.
    """
    amount = reservation.amount if amount is None else _check_amount(amount, allow_zero=True)
    if amount > reservation.amount:
        raise ServiceError(
            "amount_exceeds_hold",
            f"At most the {reservation.amount:,} credits held can be confirmed.",
            field="amount",
        )
    now = timezone.now()
    with transaction.atomic():
        claimed = CreditReservation.objects.filter(
            organization_id=reservation.organization_id, pk=reservation.pk, status=ReservationStatus.HELD
        ).update(status=ReservationStatus.CONFIRMED, consumed=amount, settled_at=now)
        if not claimed:
            current = _settled(reservation, wanted=ReservationStatus.CONFIRMED)
            if current.consumed != amount:
                raise ServiceError(
                    "reservation_closed",
                    "This reservation was already confirmed for another amount.",
                    status=409,
                )
            return current
        locked = CreditAccount.objects.select_for_update().get(organization_id=reservation.organization_id)
        fields = {
            "type": TransactionType.CONSUMPTION,
            "action": reservation.action,
            "quantity": reservation.quantity if quantity is None else quantity,
            "price": reservation.price,
            "description": reservation.description
            or (reservation.price.description if reservation.price else ""),
            "reference_type": reservation.reference_type,
            "reference_id": reservation.reference_id,
            "idempotency_key": f"reservation:{reservation.code}",
            "actor_id": reservation.actor_id,
            "metadata": {
                **reservation.metadata,
                "reservation": str(reservation.code),
                "held": reservation.amount,
            },
        }
        entry = None
        if amount and locked.frozen:
            # Credits are frozen: draw first (the hold may reach them, last), then move the
            # account with what was unfrozen, so its figures never disagree with its grants.
            draws, unfrozen = _grants_draw(
                organization_id=locked.organization_id, amount=amount, set_aside=True
            )
            account = _account_move(
                organization_id=locked.organization_id,
                held=-reservation.amount,
                balance=-amount,
                used=amount,
                frozen=-unfrozen,
            )
            entry = CreditTransaction(
                organization_id=locked.organization_id,
                account_id=locked.pk,
                amount=-amount,
                balance_after=account.balance,
                **fields,
            )
            draws = _grant_name(entry, draws)
            entry.save(force_insert=True)
            _allocations_write(entry, draws)
            _usage_roll_up(entry)
        else:
            account = _account_move(
                organization_id=locked.organization_id, held=-reservation.amount, balance=-amount, used=amount
            )
        if amount and entry is None:
            entry = _debit_entry(account=account, amount=amount, set_aside=True, **fields)
        if account.frozen:
            # The hold no longer covers anything: what a refund could not take yet goes now.
            _claims_settle(
                organization_id=account.organization_id, context={"reservation": str(reservation.code)}
            )
        if entry is not None:
            CreditReservation.objects.filter(
                organization_id=reservation.organization_id, pk=reservation.pk
            ).update(transaction=entry)
            _after_debit(account, amount=amount, transaction_id=entry.pk)
        if amount < reservation.amount:
            credit_grants_expire_due(organization_id=locked.organization_id)
    reservation.status, reservation.consumed, reservation.settled_at = (
        ReservationStatus.CONFIRMED,
        amount,
        now,
    )
    reservation.transaction = entry
    return reservation


def _release(reservation: CreditReservation, *, status: str, only_expired: bool = False) -> bool:
    now = timezone.now()
    with transaction.atomic():
        open_ = CreditReservation.objects.filter(
            organization_id=reservation.organization_id, pk=reservation.pk, status=ReservationStatus.HELD
        )
        if only_expired:
            open_ = open_.filter(expires_at__lte=now)
        if not open_.update(status=status, consumed=0, settled_at=now):
            return False
        account = _account_move(organization_id=reservation.organization_id, held=-reservation.amount)
        if account.frozen:
            # What a refund could not take while the hold covered it goes now.
            _claims_settle(
                organization_id=account.organization_id, context={"reservation": str(reservation.code)}
            )
        credit_grants_expire_due(organization_id=account.organization_id)
    reservation.status, reservation.consumed, reservation.settled_at = status, 0, now
    return True


def credit_reservation_cancel(*, reservation: CreditReservation) -> CreditReservation:
    """Release every held credit. Cancelling twice is fine; cancelling a confirmed one is not."""
    if not _release(reservation, status=ReservationStatus.CANCELLED):
        return _settled(reservation, wanted=ReservationStatus.CANCELLED)
    return reservation


def credit_reservations_expire(*, now: datetime | None = None) -> int:
    """Release holds whose time ran out. Run by the periodic job; safe to run concurrently."""
    now = now or timezone.now()
    stale = CreditReservation.objects.filter(status=ReservationStatus.HELD, expires_at__lte=now)
    return sum(_release(r, status=ReservationStatus.EXPIRED, only_expired=True) for r in stale.iterator())
