"""How many seats an organization holds and how many it is billed for."""

from django.conf import settings

from billing.models import (
    OrgSubscription,
    Plan,
)
from teams.models import Membership, Organization


def seat_holders(organization: Organization) -> int:
    """Members whose role takes a paid seat (`BILLING_SEAT_ROLES`; every role by default)."""
    return Membership.objects.filter(organization=organization, role__in=settings.BILLING_SEAT_ROLES).count()


def billable_seats(organization: Organization, *, plan: Plan | None = None) -> int:
    """The seat quantity to bill: the seat holders, and never fewer than the plan's minimum.

    Without `plan`, the plan of the subscription in force (a checkout for a new plan passes it).
    """
    if plan is None:
        subscription = (
            OrgSubscription.objects.select_related("plan").filter(organization=organization).first()
        )
        plan = subscription.plan if subscription and subscription.applies else None
    return max(plan.seat_minimum if plan else 1, seat_holders(organization))
