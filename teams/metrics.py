"""Tally's own counters, exposed with the gauges read from the database at `/metrics`.

Counters live in the process that counts them (every gunicorn worker and Celery worker has its
own), so each sample carries the process it came from; Prometheus sums them with
`sum by (name) (rate(...))`. Nothing here touches Redis: the counters must work while it is away.
"""

import os
import socket
import threading
from collections import defaultdict

_lock = threading.Lock()
_counters: dict[tuple[str, tuple[tuple[str, str], ...]], int] = defaultdict(int)
HELP: dict[str, str] = {
    "tally_cache_errors_total": "Cache operations that failed (Redis away or slow) and fell back.",
    "tally_cache_skipped_total": "Cache operations not tried while the cache was marked away.",
    "tally_rate_limit_refusals_total": "Requests refused by a rate limit.",
    "tally_rate_limit_unavailable_total": "Rate limit checks made while its Redis did not answer.",
    "tally_outbox_publish_failures_total": "Tasks whose publish to the broker failed (kept in the outbox).",
    "tally_task_failures_total": "Celery tasks that ended in failure.",
}


def inc(name: str, amount: int = 1, **labels: str) -> None:
    key = (name, tuple(sorted(labels.items())))
    with _lock:
        _counters[key] += amount


def value(name: str, **labels: str) -> int:
    with _lock:
        return _counters.get((name, tuple(sorted(labels.items()))), 0)


def snapshot() -> dict[tuple[str, tuple[tuple[str, str], ...]], int]:
    with _lock:
        return dict(_counters)


def instance() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
