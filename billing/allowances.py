"""A plan's credit allowance (a hybrid plan): credits granted when a billing period starts,
expiring when it ends, through `credits.services` like any other grant."""

from django.utils import timezone

from billing.models import OrgSubscription, SubscriptionStatus
from teams.errors import ServiceError


def subscription_allowance_grant(*, subscription: OrgSubscription | None) -> bool:
    """Grant the current period's allowance once; True when this call granted it.

    Run after every sync that may have started a period (a paid invoice, a subscription event).
    The idempotency key is the subscription and the period's start, so however many events
    report the same period, one grant is made; a plan change within the period keeps the grant
    already made, and the next period brings the new plan's allowance.
    """
    from credits import services as credit_services

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
    key = f"allowance:{subscription.stripe_subscription_id or subscription.pk}:{int(start.timestamp())}"
    # Most events of a period arrive after its grant: one indexed look instead of a replay.
    if credit_services.credits_granted(organization=subscription.organization, idempotency_key=key):
        return False
    try:
        entry = credit_services.credits_grant(
            organization=subscription.organization,
            amount=plan.credit_allowance,
            source="subscription_allowance",
            idempotency_key=key,
            expires_at=end,
            description=f"{plan.name}: credits for this period",
            reference_type="subscription",
            reference_id=subscription.stripe_subscription_id or str(subscription.pk),
        )
    except ServiceError as error:
        if error.code != "idempotency_key_reused":
            raise
        return False  # granted already for this period, under the plan it had then
    return not entry.replayed
