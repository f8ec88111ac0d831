"""How many seats an organization holds and how many it is billed for."""

from django.conf import settings

from billing.models import (
    OrgSubscription,
    Plan,
    SeatMode,
)
from teams.models import Membership, Organization


def seat_holders(organization: Organization) -> int:
    """Members whose role takes a paid seat (`BILLING_SEAT_ROLES`; every role by default)."""
    return Membership.objects.filter(organization=organization, role__in=settings.BILLING_SEAT_ROLES).count()


def billable_seats(organization: Organization, *, plan: Plan | None = None) -> int:
    """The seat quantity to bill: the seat holders, and never fewer than the plan's minimum.
    On a prepaid-seat plan already subscribed, the seats the owner bought (which are never
    fewer than the members).

    Without `plan`, the plan of the subscription in force (a checkout for a new plan passes it).
    """
    subscription = None
    if plan is None or plan.seat_mode == SeatMode.PREPAID:
        subscription = (
            OrgSubscription.objects.select_related("plan").filter(organization=organization).first()
        )
    if plan is None:
        plan = subscription.plan if subscription and subscription.applies else None
    holders = seat_holders(organization)
    least = max(plan.seat_minimum if plan else 1, holders)
    bought = (
        plan is not None
        and plan.seats_prepaid
        and subscription is not None
        and subscription.plan_id == plan.pk
        and subscription.applies
        and subscription.stripe_subscription_id
    )
    return max(least, subscription.seats) if bought else least


def prepaid_seats(organization: Organization) -> int | None:
    """The seats bought on a prepaid-seat subscription in force; None on any other plan."""
    subscription = OrgSubscription.objects.select_related("plan").filter(organization=organization).first()
    if not (subscription and subscription.applies and subscription.stripe_subscription_id):
        return None
    if not subscription.plan.seats_prepaid:
        return None
    return subscription.seats
