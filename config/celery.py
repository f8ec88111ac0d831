import os

from celery import Celery
from celery.signals import before_task_publish, task_failure, task_postrun, task_prerun

from common import logs
from teams import metrics

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Tasks queued with delay_on_commit go through the outbox (teams/outbox.py).
app = Celery("tally", task_cls="teams.outbox:OutboxTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Billing keeps its tasks beside their domain; the worker loads them all.
app.autodiscover_tasks(["billing.catalog", "billing.metering", "billing.seats", "billing.webhooks"])
app.autodiscover_tasks(["billing"], related_name="notifications")


@before_task_publish.connect
def _carry_request_id(headers=None, **_) -> None:
    """A task queued during a request takes the request's id along in its message."""
    rid = logs.request_id.get()
    if rid and headers is not None:
        headers.setdefault("request_id", rid)


_tokens: dict[str, object] = {}


@task_prerun.connect
def _adopt_request_id(task_id=None, task=None, **_) -> None:
    # In a worker the id comes from the message; a task run in-process (eager) keeps the id of
    # the request that ran it; a periodic task gets one of its own.
    rid = getattr(task.request, "request_id", None) or logs.request_id.get() or f"task-{task_id}"
    _tokens[task_id] = logs.request_id.set(rid)


@task_postrun.connect
def _drop_request_id(task_id=None, **_) -> None:
    token = _tokens.pop(task_id, None)
    if token is not None:
        logs.request_id.reset(token)


@task_failure.connect
def _count_failure(sender=None, **_) -> None:
    """Counted in the worker; with PROMETHEUS_MULTIPROC_DIR shared with the node's web processes,
    their scrape shows it."""
    metrics.inc("tally_task_failures_total", task=getattr(sender, "name", None) or "unknown")
