"""A subscription plan's credit allowance (a hybrid plan): credits granted when a billing period
starts, expiring when it ends, and expiring at once when the subscription ends early.

Billing says when a period may have started and when a subscription ended early, through the
period hooks credits registers with `billing.subscriptions.periods` (billing may not import
credits); whether and how much to grant is decided here."""

from datetime import datetime

from django.db.models import Q
from django.utils import timezone

from billing.models import OrgSubscription, SubscriptionStatus, TrialRecord
from common.errors import ServiceError
from credits import services
from credits.allowance_keys import allowance_key
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
        organization_id=organization.pk,
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


# --- Billing's period hooks ------------------------------------------------------------------


def _reference(subscription: OrgSubscription) -> str:
    return subscription.stripe_subscription_id or str(subscription.pk)


def subscription_allowance_grant(*, subscription: OrgSubscription | None) -> bool:
    """Grant the current period's allowance once; True when this call granted it.

    Run after every sync that may have started a period (a paid invoice, a subscription event).
    The idempotency key is the subscription and the period's start, so however many events
    report the same period, one grant is made; a plan change within the period keeps the grant
    already made, and the next period brings the new plan's allowance. A trial brings one only
    if it is the organization's one recorded trial.
    """
    if subscription is None:
        return False
    plan = subscription.plan
    start, end = subscription.current_period_start, subscription.current_period_end
    if (
        not plan.credit_allowance
        or subscription.status not in (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING)
        or start is None
        or end is None
        or end <= timezone.now()
    ):
        return False
    if (
        subscription.status == SubscriptionStatus.TRIALING
        and not TrialRecord.objects.filter(
            organization_id=subscription.organization_id,
            stripe_subscription_id=subscription.stripe_subscription_id,
        ).exists()
    ):
        return False  # a second trial, refused: its credits would be a second free month
    return credits_allowance_grant(
        organization=subscription.organization,
        amount=plan.credit_allowance,
        idempotency_key=allowance_key(_reference(subscription), int(start.timestamp())),
        expires_at=end,
        description=f"{plan.name}: credits for this period",
        reference_id=_reference(subscription),
    )


def subscription_allowance_end(*, organization: Organization, subscription_id: str, reason: str) -> int:
    """The subscription ended at once (refunded, canceled now, unpaid, deleted, its
    organization deleted): what remains of the allowances it granted expires now, with a
    ledger line. Safe to repeat: a second call finds nothing left to expire."""
    return credits_allowance_end(organization=organization, reference_id=subscription_id, reason=reason)
