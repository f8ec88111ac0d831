"""Queueing seat work after a commit: one sync per organization at a time, and the cancellation of
a deleted organization's subscription."""

from django.conf import settings
from django.core.cache import cache

from billing.models import OrgSubscription
from billing.seats.tasks import seat_sync, subscription_cancel_deleted
from teams.models import Organization

# A scheduled flag outlives its task's countdown by this much: if a worker is down, the next
# change schedules again after it, and nightly reconciliation catches the rest.
SCHEDULED_GRACE = 300


def _scheduled_key(organization_id: int) -> str:
    return f"billing:seat-sync:scheduled:{organization_id}"


def seat_sync_schedule(*, organization_id: int) -> bool:
    """After a membership change has committed: make sure one sync is on its way.

    Returns whether this call scheduled it (False: one is already waiting and will read the
    count this change left behind, or the organization has no paid subscription).
    """
    paying = OrgSubscription.objects.filter(
        organization_id=organization_id, stripe_subscription_id__isnull=False
    ).exists()
    if not paying:
        return False
    delay = settings.BILLING_SEAT_SYNC_DELAY
    if not cache.add(_scheduled_key(organization_id), 1, timeout=delay + SCHEDULED_GRACE):
        return False
    try:
        seat_sync.apply_async((organization_id,), countdown=delay)
    except Exception:
        cache.delete(_scheduled_key(organization_id))  # let the next change try again
        raise
    return True


def organization_deleted(*, organization: Organization) -> None:
    """teams is deleting `organization` (inside its transaction): cancel the subscription once
    that commits."""
    subscription_cancel_deleted.delay_on_commit(organization.pk)
