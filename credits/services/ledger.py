"""Every change to credits goes through here.

A balance moves only together with a ledger line, in one short transaction: a single conditional
`UPDATE ... RETURNING` on the account row both checks the funds and takes the row lock, then the
grants are drawn and the ledger line is inserted. The account lock serializes everything that
touches an account's grants, so the grants need no locks of their own.

Idempotency: every ledger line and reservation carries a key that is unique per organization (it
has one account). A retried call hits the unique index, its transaction rolls back, and the
original is returned.
"""

from datetime import datetime

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from common.digest import matching
from common.errors import ServiceError
from credits.models import (
    CreditAccount,
    CreditAllocation,
    CreditGrant,
    CreditTransaction,
    GrantSource,
    TransactionType,
)
from credits.services.validation import _text
from teams.models import Organization, User

_RETURNING = (
    "id, organization_id, balance, held, frozen, overdraft_allowance, low_balance_threshold, "
    "auto_recharge_enabled, auto_recharge_threshold"
)


def _spend_check(*, amount: str, now: str, organization: str) -> str:
    """SQL for "`amount` more may be spent (or held)": never the frozen credits, never those of a
    grant past its date (`expired`) and never those open holds need, counting every hold as
    backed by valid credits (a hold made before a grant expired may end up drawing on it, but
    nothing else does); the overdraft only when nothing is frozen or expired, so that an
    overdraft always means every grant is empty. Placeholders only: values are parameters."""
    expired = (
        f"(SELECT COALESCE(SUM(g.remaining), 0) FROM {CreditGrant._meta.db_table} AS g "  # noqa: S608
        f"WHERE g.organization_id = {organization} AND g.remaining > 0 AND g.expires_at <= {now})"
    )
    return (
        f"balance - {amount} >= frozen + held + {expired} "
        f"- CASE WHEN frozen = 0 AND {expired} = 0 THEN overdraft_allowance ELSE 0 END"
    )


_RETURNING_NAMES = [name.strip() for name in _RETURNING.split(",")]


def _fetchone(sql: str, params) -> tuple | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _account_move(
    *,
    account_id: int | None = None,
    organization_id: int | None = None,
    balance: int = 0,
    held: int = 0,
    used: int = 0,
    purchased: int = 0,
    frozen: int = 0,
    spend: int | None = None,
) -> CreditAccount | None:
    """Move an account's figures in one conditional UPDATE and return the row as it now is.

    With `spend`, the row changes only if that many credits are spendable (overdraft included);
    None means they were not (or that there is no account). The UPDATE holds the row lock until
    the surrounding transaction ends.
    """
    where = "id = %s" if account_id is not None else "organization_id = %s"
    params = [
        balance,
        held,
        frozen,
        used,
        purchased,
        account_id if account_id is not None else organization_id,
    ]
    if spend is not None:
        table = CreditAccount._meta.db_table
        where += " AND " + _spend_check(amount="%s", now="%s", organization=f"{table}.organization_id")
        now = timezone.now()
        params += [spend, now, now]
    # Only constant fragments are interpolated; every value travels as a parameter.
    sql = (
        f"UPDATE {CreditAccount._meta.db_table} SET balance = balance + %s, held = held + %s, "  # noqa: S608
        f"frozen = frozen + %s, "
        f"lifetime_used = lifetime_used + %s, lifetime_purchased = lifetime_purchased + %s "
        f"WHERE {where} RETURNING {_RETURNING}"
    )
    row = _fetchone(sql, params)
    if row is None:
        return None
    return CreditAccount(**dict(zip(_RETURNING_NAMES, row, strict=True)))


def _replay(model, *, organization_id: int, key: str):
    """The row an earlier call with this idempotency key wrote, marked as replayed."""
    found = matching(model.objects, organization_id=organization_id, idempotency_key=key).first()
    if found is not None:
        found.replayed = True
    return found


def _replay_for_org(model, *, organization: Organization, key: str):
    return _replay(model, organization_id=organization.pk, key=key)


def _check_same_request(original, *, amount: int, action: str) -> None:
    if abs(original.amount) != amount or original.action != action:
        raise ServiceError(
            "idempotency_key_reused",
            "This idempotency key was already used for a different request.",
            field="idempotency_key",
            status=409,
        )


class _Refused(Exception):
    """The conditional update matched no row."""


# A low-balance threshold given as a percentage counts from the last of these grants.
PERCENT_BASES = (GrantSource.PURCHASE, GrantSource.SUBSCRIPTION_ALLOWANCE)


def _threshold_follow(*, account_id: int, granted: int) -> None:
    """A percentage threshold follows the newest purchase or allowance: one conditional UPDATE,
    in the grant's transaction (integer division in the database: rounded down)."""
    CreditAccount.objects.filter(pk=account_id, low_balance_percent__gt=0).update(
        low_balance_threshold=granted * F("low_balance_percent") / 100
    )


def _credit(
    *,
    account_id: int,
    amount: int,
    type: str,
    source: str,
    idempotency_key: str,
    expires_at: datetime | None = None,
    priority: int | None = None,
    description: str = "",
    reference_type: str = "",
    reference_id: str = "",
    metadata: dict | None = None,
    actor: User | None = None,
    refund_of: CreditTransaction | None = None,
    restore_to: list[tuple[int, int]] | None = None,
) -> CreditTransaction:
    """Add credits: first repay any overdraft, then refill `restore_to` grants (grant id, room),
    then put the rest in a new grant."""
    try:
        with transaction.atomic():
            account = _account_move(
                account_id=account_id,
                balance=amount,
                purchased=amount if source == GrantSource.PURCHASE else 0,
                used=-amount if type == TransactionType.REFUND else 0,
            )
            before = account.balance - amount
            if source in PERCENT_BASES:
                _threshold_follow(account_id=account_id, granted=amount)
            repaid = min(amount, max(0, -before))
            entry = CreditTransaction.objects.create(
                organization_id=account.organization_id,
                account_id=account_id,
                type=type,
                amount=amount,
                balance_after=account.balance,
                description=_text(description, 200),
                reference_type=_text(reference_type, 40),
                reference_id=_text(reference_id, 100),
                idempotency_key=idempotency_key,
                refund_of=refund_of,
                actor=actor,
                metadata={**(metadata or {}), **({"overdraft_repaid": repaid} if repaid else {})},
            )
            left = amount - repaid
            allocations = []
            for grant_id, room in restore_to or []:
                put = min(left, room)
                if put > 0:
                    CreditGrant.objects.filter(pk=grant_id).update(remaining=F("remaining") + put)
                    allocations.append(
                        CreditAllocation(
                            organization_id=account.organization_id,
                            transaction=entry,
                            grant_id=grant_id,
                            amount=put,
                        )
                    )
                    left -= put
            if left > 0:
                grant = CreditGrant.objects.create(
                    organization_id=account.organization_id,
                    account_id=account_id,
                    source=source,
                    amount=left,
                    remaining=left,
                    priority=GrantSource.default_priority(source) if priority is None else priority,
                    expires_at=expires_at,
                    description=_text(description, 200),
                )
                allocations.append(
                    CreditAllocation(
                        organization_id=account.organization_id, transaction=entry, grant=grant, amount=left
                    )
                )
            CreditAllocation.objects.bulk_create(allocations)
            return entry
    except IntegrityError:
        organization_id = CreditAccount.objects.values_list("organization_id", flat=True).get(pk=account_id)
        original = _replay(CreditTransaction, organization_id=organization_id, key=idempotency_key)
        if original is None:
            raise
        if original.amount != amount:
            _check_same_request(original, amount=amount, action="")
        return original
