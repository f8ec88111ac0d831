"""Apply a stored Stripe event. Safe to run twice: every handler re-reads the object from Stripe
and upserts by Stripe's ids, and the credit grants that follow (packages, a plan's allowance)
carry idempotency keys the database keeps unique."""

import logging
from datetime import datetime, timedelta

from django.db.models import F
from django.utils import timezone
from djstripe.models import Event

from billing.models import StripeEventOutcome
from billing.subscriptions import periods
from billing.webhooks import registry

log = logging.getLogger("tally.stripe_events")

# After the n-th failure an event is due again after RETRY_BACKOFF[n - 1] (the last one repeats).
RETRY_BACKOFF = [timedelta(minutes=m) for m in (5, 15, 60, 180, 720)]


def handle_recorded(event_id: str, kind: str | None = None, object_id: str | None = None) -> None:
    """Apply an event and record the outcome: processed, or failed and due again later. The
    error is raised again, for the task's own retries."""
    try:
        handle(event_id, kind, object_id)
    except Exception as error:
        _record_failure(event_id, kind, object_id, error)
        raise
    now = timezone.now()
    # One statement (INSERT ... ON CONFLICT DO UPDATE): a first success inserts the row, a retry
    # that succeeds marks it processed and keeps its attempts and last error.
    StripeEventOutcome.objects.bulk_create(
        [
            StripeEventOutcome(
                event_id=event_id,
                type=kind or "",
                object_id=object_id or "",
                status=StripeEventOutcome.Status.PROCESSED,
                next_attempt_at=None,
                created_at=now,
                updated_at=now,
            )
        ],
        update_conflicts=True,
        unique_fields=["event_id"],
        update_fields=["type", "object_id", "status", "next_attempt_at", "updated_at"],
    )


def _record_failure(event_id: str, kind: str | None, object_id: str | None, error: Exception) -> None:
    now = timezone.now()
    outcome, _ = StripeEventOutcome.objects.get_or_create(
        event_id=event_id,
        defaults={
            "type": kind or "",
            "object_id": object_id or "",
            "status": StripeEventOutcome.Status.FAILED,
        },
    )
    StripeEventOutcome.objects.filter(pk=outcome.pk).update(
        status=StripeEventOutcome.Status.FAILED,
        attempts=F("attempts") + 1,
        last_error=repr(error)[:2000],
        next_attempt_at=now + RETRY_BACKOFF[min(outcome.attempts, len(RETRY_BACKOFF) - 1)],
        updated_at=now,
    )
    log.warning("stripe event %s (%s) failed: %r", event_id, kind, error)


def failed_events_retry(*, now: datetime | None = None, limit: int = 100) -> tuple[int, int]:
    """Handle again the failed events that are due; returns (processed, still failing)."""
    now = now or timezone.now()
    due = list(
        StripeEventOutcome.objects.filter(status=StripeEventOutcome.Status.FAILED, next_attempt_at__lte=now)
        .order_by("next_attempt_at", "pk")
        .values_list("event_id", "type", "object_id")[:limit]
    )
    processed = failing = 0
    for event_id, kind, object_id in due:
        try:
            handle_recorded(event_id, kind or None, object_id or None)
        except Exception:
            failing += 1
        else:
            processed += 1
    return processed, failing


def handle(event_id: str, kind: str | None = None, object_id: str | None = None) -> None:
    """Apply an event; the receiver passes its type and object id, a replay only its id."""
    if kind is None or object_id is None:
        event = Event.objects.filter(id=event_id).first()
        if event is None:
            return
        kind, object_id = event.type, ((event.data or {}).get("object") or {}).get("id")
    synced = registry.dispatch(kind, object_id, event_id)
    # Whatever started a period (the first payment, a renewal, a trial), its allowance follows.
    periods.period_started(subscription=synced)
