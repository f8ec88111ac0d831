"""A plan's credit allowance (a hybrid plan): credits granted when a billing period starts,
expiring when it ends, and expiring at once when the subscription ends early.

Billing decides when and how much; credits keeps the ledger. Credits sits above billing in the
layers, so it registers its handlers here (`allowance_handlers_register`, from its AppConfig)
and billing calls them without importing credits.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.utils import timezone

from billing.models import OrgSubscription, SubscriptionStatus, TrialRecord
from teams.models import Organization


@dataclass(frozen=True)
class AllowanceHandlers:
    # grant(organization=, amount=, idempotency_key=, expires_at=, description=, reference_id=)
    # -> True when this call granted (False: granted already under that key).
    grant: Callable[..., bool]
    # end(organization=, reference_id=, reason=) -> credits expired now (0 when none were left).
    end: Callable[..., int]


_handlers: AllowanceHandlers | None = None


def allowance_handlers_register(*, grant: Callable[..., bool], end: Callable[..., int]) -> None:
    """Credits registers how an allowance is granted and how it is ended early."""
    global _handlers
    _handlers = AllowanceHandlers(grant=grant, end=end)


def _registered() -> AllowanceHandlers:
    if _handlers is None:
        raise LookupError("No allowance handlers are registered: is the credits app installed?")
    return _handlers


def _reference(subscription: OrgSubscription) -> str:
    return subscription.stripe_subscription_id or str(subscription.pk)


def allowance_key(subscription_id: str, period_start: int) -> str:
    """The idempotency key of one period's allowance: the subscription and the period's start
    (a Unix time), so however many events report a period, it is granted once."""
    return f"allowance:{subscription_id}:{period_start}"


def allowance_key_parse(key: str) -> tuple[str, int] | None:
    """(subscription id, period start) of an allowance's key; None for any other key."""
    parts = key.split(":")
    if len(parts) != 3 or parts[0] != "allowance":
        return None
    try:
        return parts[1], int(parts[2])
    except ValueError:
        return None


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
    return _registered().grant(
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
    return _registered().end(organization=organization, reference_id=subscription_id, reason=reason)
