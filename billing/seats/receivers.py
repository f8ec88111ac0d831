"""Billing's reactions to teams: membership changes keep Stripe's seat quantity in step, the
seat limit guards new members, and deleting an organization cancels its subscription.

teams knows nothing of billing; these hook in from `BillingConfig.ready()`.
"""

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from billing import seats
from teams import services as team_services
from teams.models import Membership

team_services.membership_guard_register(seats.seat_limit_guard)
team_services.organization_deleted_register(seats.organization_deleted)


@receiver(post_save, sender=Membership, dispatch_uid="billing.seats.membership_saved")
@receiver(post_delete, sender=Membership, dispatch_uid="billing.seats.membership_deleted")
def membership_changed(sender, instance: Membership, raw: bool = False, **kwargs) -> None:
    """Joined, left, removed or changed role: sync seats once the change is committed (the
    task calls Stripe, which must not happen inside the request's transaction)."""
    if raw:
        return  # loading fixtures
    organization_id = instance.organization_id
    transaction.on_commit(lambda: seats.seat_sync_schedule(organization_id=organization_id))
