"""Tally's own counters and request latencies, exposed with the gauges read from the database at
`/metrics`, counted with prometheus_client.

A node runs several processes (gunicorn workers, Celery workers), and a scrape is answered by one
of them. With `PROMETHEUS_MULTIPROC_DIR` set (read by prometheus_client from the environment when
it is first imported), every process of the node writes its samples to files in that directory
and the scrape sums them: web and Celery processes of one node point at the same directory, empty
when the node starts. Without it (the demo, one process) the samples are this process's own.
Nothing here touches Redis: the counters must work while it is away.
"""

import os

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess

# A counter's `_created` series means nothing summed over processes, and doubles the output.
prometheus_client.disable_created_metrics()

# name -> (help, label names)
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "tally_cache_errors_total": (
        "Cache operations that failed (Redis away or slow) and fell back.",
        ("operation",),
    ),
    "tally_cache_skipped_total": (
        "Cache operations not tried while the cache was marked away.",
        ("operation",),
    ),
    "tally_rate_limit_refusals_total": ("Requests refused by a rate limit.", ()),
    "tally_rate_limit_unavailable_total": (
        "Rate limit checks made while its Redis did not answer.",
        ("outcome",),
    ),
    "tally_outbox_publish_failures_total": (
        "Tasks whose publish to the broker failed (kept in the outbox).",
        (),
    ),
    "tally_task_failures_total": ("Celery tasks that ended in failure.", ("task",)),
}
HELP = {name: help_text for name, (help_text, _) in COUNTERS.items()}
REQUEST_SECONDS = "tally_http_request_duration_seconds"
# Web requests: a page is fast under 0.1 s; Stripe calls inside a request take up to seconds.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

_counters = {
    name: Counter(name.removesuffix("_total"), help_text, labels)
    for name, (help_text, labels) in COUNTERS.items()
}
_latency = Histogram(
    REQUEST_SECONDS,
    "Time to answer a request, by the view that answered it.",
    ("view", "method"),
    buckets=_BUCKETS,
)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def inc(name: str, amount: int = 1, **labels: str) -> None:
    counter = _counters[name]
    (counter.labels(**labels) if labels else counter).inc(amount)


def observe_request(*, view: str, method: str, seconds: float) -> None:
    _latency.labels(view=view, method=method if method in METHODS else "other").observe(seconds)


def registry() -> CollectorRegistry:
    """What a scrape reads: every process of the node in multiprocess mode, else this one."""
    if multiprocess_dir():
        collecting = CollectorRegistry()
        multiprocess.MultiProcessCollector(collecting)
        return collecting
    return prometheus_client.REGISTRY


def exposition() -> bytes:
    return prometheus_client.generate_latest(registry())


def snapshot() -> dict[tuple[str, tuple[tuple[str, str], ...]], int]:
    """Every counter sample the scrape would show, summed over the node's processes."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
    for family in registry().collect():
        for sample in family.samples:
            if sample.name in COUNTERS:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                found[key] = found.get(key, 0) + int(sample.value)
    return found


def value(name: str, **labels: str) -> int:
    return snapshot().get((name, tuple(sorted(labels.items()))), 0)
