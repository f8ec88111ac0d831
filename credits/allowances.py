"""A subscription plan's credit allowance, as the ledger sees it. Billing decides when a period's
allowance is due and when a subscription ended early; it calls these through the handlers
credits registers with `billing.allowances` (billing may not import credits)."""

from datetime import datetime

from django.db.models import Q
from django.utils import timezone

from common.errors import ServiceError
from credits import services
from credits.models import CreditGrant, GrantSource, TransactionType
from teams.models import Organization
from teams.services import audit_record

REFERENCE_TYPE = "subscription"


def credits_allowance_grant(
    *,
    organization: Organization,
    amount: int,
    idempotency_key: str,
    expires_at: datetime,
    description: str,
    reference_id: str,
) -> bool:
    """Grant one period's allowance under its key; True when this call granted it."""
    # Most events of a period arrive after its grant: one indexed look instead of a replay.
    if services.credits_granted(organization=organization, idempotency_key=idempotency_key):
        return False
    try:
        entry = services.credits_grant(
            organization=organization,
            amount=amount,
            source=GrantSource.SUBSCRIPTION_ALLOWANCE,
            idempotency_key=idempotency_key,
            expires_at=expires_at,
            description=description,
            reference_type=REFERENCE_TYPE,
            reference_id=reference_id,
        )
    except ServiceError as error:
        if error.code != "idempotency_key_reused":
            raise
        return False  # granted already for this period, under the plan it had then
    if not entry.replayed:
        services.credit_allowance_disputes_apply(subscription_id=reference_id)
    return not entry.replayed


def credits_allowance_end(*, organization: Organization, reference_id: str, reason: str) -> int:
    """The subscription `reference_id` ended early: every allowance it granted that still has
    credits left expires now, each with an expiry line in the ledger. Returns the credits taken.

    The grant's expiry moves to now (its credits are no longer drawable), then the usual expiry
    writes the ledger line; credits held by an open reservation are taken by the expiry job once
    the hold is settled. A repeat finds nothing left, so a replayed webhook expires once.
    """
    now = timezone.now()
    grants = CreditGrant.objects.filter(
        account__organization=organization,
        source=GrantSource.SUBSCRIPTION_ALLOWANCE,
        remaining__gt=0,
        allocations__transaction__type=TransactionType.ALLOWANCE,
        allocations__transaction__reference_type=REFERENCE_TYPE,
        allocations__transaction__reference_id=reference_id,
    ).distinct()
    taken = 0
    for grant in grants:
        CreditGrant.objects.filter(pk=grant.pk).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        ).update(expires_at=now)
        grant.refresh_from_db(fields=["expires_at", "remaining"])
        entry = services.credit_grant_expire(grant=grant)
        if entry is not None:
            taken -= entry.amount
    if taken:
        audit_record(
            organization=organization,
            action="credits.allowance_ended",
            target=reference_id,
            data={"credits": taken, "reason": reason},
        )
    return taken
