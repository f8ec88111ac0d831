"""Expiring what is left of grants past their date, each with a ledger line."""

from datetime import datetime

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from credits.models import (
    CreditAccount,
    CreditAllocation,
    CreditGrant,
    CreditTransaction,
    TransactionType,
)
from credits.services.debits import _after_debit
from credits.services.ledger import _account_move


def credit_grant_expire(*, grant: CreditGrant) -> CreditTransaction | None:
    """Write the expiry of what is left of one expired grant.

    Credits held by open reservations are not expired from under them: only what exceeds the
    holds goes now, and the periodic job takes the rest once the holds are settled.
    """
    with transaction.atomic():
        account = CreditAccount.objects.select_for_update().get(organization_id=grant.organization_id)
        grant = CreditGrant.objects.get(pk=grant.pk)
        if not grant.is_expired() or grant.remaining <= 0:
            return None
        # Frozen credits are not this expiry's to take; holds keep what backs them.
        take = min(grant.drawable, max(0, account.available))
        if take <= 0:
            return None
        moved = _account_move(organization_id=account.organization_id, balance=-take)
        CreditGrant.objects.filter(pk=grant.pk).update(remaining=F("remaining") - take)
        entry = CreditTransaction.objects.create(
            organization_id=account.organization_id,
            account_id=account.pk,
            type=TransactionType.EXPIRY,
            amount=-take,
            balance_after=moved.balance,
            description=f"Expired: {grant.description or grant.get_source_display()}",
            reference_type="grant",
            reference_id=str(grant.code),
            # Under the account lock `remaining` only shrinks, so the key is unique per expiry.
            idempotency_key=f"expiry:{grant.code}:{grant.remaining}",
        )
        CreditAllocation.objects.create(
            organization_id=account.organization_id, transaction=entry, grant=grant, amount=-take
        )
        _after_debit(moved, amount=take, transaction_id=entry.pk)
    return entry


def credit_grants_expire_due(*, organization_id: int, grant_ids: list[int] | None = None) -> int:
    """Expire what is left of the organization's grants past their date (of `grant_ids`, if
    given): credits a released hold kept, or that a dispute kept frozen until it was won.

    Called in the transaction that freed them: those credits were never to be spendable again,
    so they go at once instead of waiting for the periodic job.
    """
    now = timezone.now()
    due = CreditGrant.objects.filter(organization_id=organization_id, expires_at__lte=now, remaining__gt=0)
    if grant_ids is not None:
        due = due.filter(pk__in=grant_ids)
    return sum(credit_grant_expire(grant=g) is not None for g in due.order_by("expires_at", "pk"))


def credit_grants_expire(*, now: datetime | None = None) -> int:
    """Expire every grant past its date. Run by the periodic job; safe to run concurrently."""
    now = now or timezone.now()
    due = CreditGrant.objects.filter(expires_at__lte=now, remaining__gt=0).order_by("expires_at")
    return sum(credit_grant_expire(grant=g) is not None for g in due.iterator())
