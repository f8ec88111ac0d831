"""Endpoints for load balancers and monitoring: liveness, readiness and Prometheus metrics.

`/healthz` answers while the process can serve at all. `/readyz` checks what a request needs:
the database (reachable, every migration applied but the contract ones and what depends on them,
see common/online_migrations.py) decides 200 or 503; Redis and the broker are
reported but do not take a node out of rotation, because Tally keeps working without them
(the cache misses, tasks wait in the outbox) and every node would be taken out at once.
`/metrics` is Prometheus' text format (the counters summed over every process of the node, see
teams/metrics.py); it needs `Authorization: Bearer $METRICS_TOKEN`, or, with no
token set, a request from the machine itself.
"""

import hmac
import time

from django.conf import settings
from django.core.cache import caches
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from billing.models import MeterReport, StripeEventOutcome
from common.online_migrations import expand_plan
from config.celery import app as celery_app
from teams import metrics
from teams.models import QueuedTask

_migrated = False  # once the migrations it needs are applied, they stay so for this process


def _database() -> str | None:
    global _migrated
    try:
        connection = connections[DEFAULT_DB_ALIAS]
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        if not _migrated:
            executor = MigrationExecutor(connection)
            graph = executor.loader.graph
            if expand_plan(executor.migration_plan(graph.leaf_nodes()), graph):
                return "migrations not applied"
            _migrated = True
    except Exception as error:
        return f"unreachable: {error.__class__.__name__}"
    return None


def _redis() -> str | None:
    backend = caches["default"]
    client_of = getattr(backend, "_cache", None)
    if client_of is None:
        return None  # a local-memory cache (the demo) is always there
    try:
        client_of.get_client(write=False).ping()
    except Exception as error:
        return f"unreachable: {error.__class__.__name__}"
    return None


def _broker() -> str | None:
    app = celery_app
    if app.conf.task_always_eager:
        return None  # tasks run in-process
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=1)
    except Exception as error:
        return f"unreachable: {error.__class__.__name__}"
    return None


@never_cache
@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request):
    checks = {"database": _database(), "redis": _redis(), "broker": _broker()}
    body = {name: problem or "ok" for name, problem in checks.items()}
    if checks["database"]:
        body["status"] = "unavailable"
        return JsonResponse(body, status=503)
    body["status"] = "degraded" if any(checks.values()) else "ok"
    return JsonResponse(body)


def _allowed(request) -> bool:
    token = settings.METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
    return request.META.get("REMOTE_ADDR") in ("127.0.0.1", "::1")


def _gauges() -> list[tuple[str, str, float]]:
    oldest = QueuedTask.objects.order_by("created_at").values_list("created_at", flat=True).first()
    failed_event = (
        StripeEventOutcome.objects.filter(status="failed")
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    now = time.time()
    return [
        ("tally_outbox_depth", "Tasks waiting in the outbox for the broker.", QueuedTask.objects.count()),
        (
            "tally_outbox_oldest_seconds",
            "Age of the oldest task waiting in the outbox.",
            now - oldest.timestamp() if oldest else 0,
        ),
        (
            "tally_stripe_events_failed",
            "Stripe events whose handler failed and are due again.",
            StripeEventOutcome.objects.filter(status="failed").count(),
        ),
        (
            "tally_stripe_event_failed_oldest_seconds",
            "Age of the oldest Stripe event whose handler keeps failing.",
            now - failed_event.timestamp() if failed_event else 0,
        ),
        (
            "tally_meter_reports_failed",
            "Usage reports Stripe keeps refusing (flagged failed, still retried).",
            MeterReport.objects.filter(status="failed").count(),
        ),
        (
            "tally_meter_reports_pending",
            "Usage reports not yet accepted by Stripe.",
            MeterReport.objects.filter(status="pending").count(),
        ),
    ]


@never_cache
@require_GET
def metrics_view(request):
    if not _allowed(request):
        return HttpResponse("Not found", status=404, content_type="text/plain")
    lines = []
    for name, help_text, value in _gauges():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value:g}"]
    # Tally's counters and latencies, summed over every process of the node (teams/metrics.py).
    body = ("\n".join(lines) + "\n").encode() + metrics.exposition()
    return HttpResponse(body, content_type="text/plain; version=0.0.4; charset=utf-8")
