"""Queueing seat work after a commit: one sync per organization at a time, and the cancellation of
a deleted organization's subscription."""

from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.models import OrgSubscription, SeatSyncDue
from billing.seats.tasks import seat_sync, subscription_cancel_deleted
from teams.models import Organization

# A scheduled flag outlives its task's countdown by this much: if a worker is down, the next
# change schedules again after it, and nightly reconciliation catches the rest.
SCHEDULED_GRACE = 300
# A change still unsynced this long after its sync was due is queued again by the sweep.
SWEEP_AFTER = timedelta(seconds=60)


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
    _due(organization_id)
    delay = settings.BILLING_SEAT_SYNC_DELAY
    if not cache.add(_scheduled_key(organization_id), 1, timeout=delay + SCHEDULED_GRACE):
        return False
    # Through the outbox: a broker away now delays the sync instead of losing it.
    seat_sync.apply_async_on_commit((organization_id,), countdown=delay)
    return True


def _due(organization_id: int) -> None:
    """Note the change durably: the flag above lives in the cache, the task in the broker."""
    now = timezone.now()
    if SeatSyncDue.objects.filter(organization_id=organization_id).update(last=now):
        return
    try:
        with transaction.atomic():
            SeatSyncDue.objects.create(organization_id=organization_id, since=now, last=now)
    except IntegrityError:
        SeatSyncDue.objects.filter(organization_id=organization_id).update(last=now)


def seat_syncs_sweep(*, now: datetime | None = None) -> int:
    """Queue again the syncs of changes left unsynced past their time (a lost task); returns
    how many. Run by the periodic job; running it twice at once queues a sync twice, which the
    sync's lock and its compare-first make harmless."""
    now = now or timezone.now()
    late = now - timedelta(seconds=settings.BILLING_SEAT_SYNC_DELAY) - SWEEP_AFTER
    queued = 0
    for organization_id in SeatSyncDue.objects.filter(since__lt=late).values_list(
        "organization_id", flat=True
    ):
        # Claimed by moving `since`: the next sweep waits a full window before trying again.
        if SeatSyncDue.objects.filter(organization_id=organization_id, since__lt=late).update(since=now):
            seat_sync.apply_async_on_commit((organization_id,))
            queued += 1
    return queued


def organization_deleted(*, organization: Organization) -> None:
    """teams is deleting `organization` (inside its transaction): cancel the subscription once
    that commits."""
    subscription_cancel_deleted.delay_on_commit(organization.pk)
