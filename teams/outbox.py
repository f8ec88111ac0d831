"""Tasks are not lost while the broker is away: a transactional outbox.

`task.delay_on_commit(...)` (and `apply_async_on_commit`) write a `QueuedTask` row in the
transaction of the action that queues it; once that commits, the row is published to the broker
and deleted. When the broker does not answer, the row stays, and `outbox_relay` (on the beat
schedule, and `manage.py outbox_relay`) publishes it when the broker is back. A row is claimed by
a conditional update before it is published, so two relays never send it twice; a crash between
sending and deleting sends it again under the same task id, which every task tolerates (tasks
are idempotent). With eager tasks (the demo, tests) there is no broker and no outbox.
"""

# Celery loads `OutboxTask` as its task class before Django's apps are ready, so the models
# are imported where they are used, not at the top.
import logging
from datetime import timedelta

from celery.contrib.django.task import DjangoTask
from django.db import transaction
from django.utils import timezone

log = logging.getLogger("tally.outbox")

CLAIM_SECONDS = 60
BATCH = 500


class OutboxTask(DjangoTask):
    def delay_on_commit(self, *args, **kwargs) -> None:
        self.apply_async_on_commit(args, kwargs)

    def apply_async_on_commit(self, args=None, kwargs=None, *, countdown: float | None = None) -> None:
        if self.app.conf.task_always_eager:
            super().apply_async_on_commit(args, kwargs, countdown=countdown)
            return
        outbox_enqueue(self.name, list(args or ()), dict(kwargs or {}), countdown=countdown)


def outbox_enqueue(task: str, args: list, kwargs: dict, *, countdown: float | None = None) -> None:
    """Write the task in the current transaction; publish it once that commits."""
    from teams.models import QueuedTask

    not_before = timezone.now() + timedelta(seconds=countdown) if countdown else None
    row = QueuedTask.objects.create(task=task, args=args, kwargs=kwargs, not_before=not_before)
    transaction.on_commit(lambda: outbox_publish([row.pk]))


def _claim(pk: int) -> bool:
    from django.db.models import Q

    from teams.models import QueuedTask

    now = timezone.now()
    return bool(
        QueuedTask.objects.filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now), pk=pk).update(
            claimed_until=now + timedelta(seconds=CLAIM_SECONDS)
        )
    )


def outbox_publish(pks: list[int]) -> int:
    """Send these rows to the broker; returns how many it took. A broker away leaves them queued."""
    from celery import current_app

    from teams import metrics
    from teams.models import QueuedTask

    sent = 0
    app = current_app
    try:
        with app.connection_for_write() as connection:
            # One quick attempt: a request must not wait for a broker that is away.
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0)
            for pk in pks:
                if not _claim(pk):
                    continue  # another relay has it, or it was sent
                row = QueuedTask.objects.filter(pk=pk).first()
                if row is None:
                    continue
                options = {}
                if row.not_before and row.not_before > timezone.now():
                    options["eta"] = row.not_before
                try:
                    app.tasks[row.task].apply_async(
                        row.args,
                        row.kwargs,
                        task_id=str(row.task_id),
                        connection=connection,
                        retry=False,
                        **options,
                    )
                except Exception as exc:
                    _release(row, exc)
                    raise
                QueuedTask.objects.filter(pk=pk).delete()
                sent += 1
    except Exception as exc:
        metrics.inc("tally_outbox_publish_failures_total")
        log.warning("broker away: %d task(s) kept in the outbox (%r)", len(pks) - sent, exc)
    return sent


def _release(row, exc: Exception) -> None:
    from django.db.models import F

    from teams.models import QueuedTask

    QueuedTask.objects.filter(pk=row.pk).update(
        claimed_until=None, attempts=F("attempts") + 1, last_error=repr(exc)[:1000]
    )


def outbox_relay(*, limit: int = BATCH) -> int:
    """Publish what the outbox still holds, oldest first; returns how many were sent."""
    from django.db.models import Q

    from teams.models import QueuedTask

    now = timezone.now()
    pks = list(
        QueuedTask.objects.filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    return outbox_publish(pks) if pks else 0


def outbox_depth() -> int:
    from teams.models import QueuedTask

    return QueuedTask.objects.count()
