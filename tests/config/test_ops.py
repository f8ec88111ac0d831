"""/healthz, /readyz and /metrics: what load balancers and Prometheus read."""

import pytest

from billing.models import StripeEventOutcome
from teams import metrics
from teams.models import QueuedTask

pytestmark = pytest.mark.django_db

DEAD_REDIS = "redis://127.0.0.1:1/0"


def test_healthz_answers_without_the_database(client, django_assert_max_num_queries):
    with django_assert_max_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_is_ok_with_everything_up(client):
    body = client.get("/readyz").json()
    assert body == {"database": "ok", "redis": "ok", "broker": "ok", "status": "ok"}


def test_readyz_reports_redis_away_but_keeps_the_node_in_rotation(client, settings):
    settings.CACHES = {
        "default": {"BACKEND": "teams.cache.ResilientRedisCache", "LOCATION": DEAD_REDIS, "OPTIONS": {}}
    }
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["redis"].startswith("unreachable") and response.json()["status"] == "degraded"


def test_readyz_reports_the_broker_away(client):
    from config.celery import app

    saved = app.conf.broker_url, app.conf.task_always_eager
    app.conf.broker_url, app.conf.task_always_eager = DEAD_REDIS, False
    try:
        response = client.get("/readyz")
    finally:
        app.conf.broker_url, app.conf.task_always_eager = saved
    assert response.status_code == 200
    assert response.json()["broker"].startswith("unreachable")


def test_readyz_is_503_without_the_database(client, monkeypatch):
    from django.db import connections

    def refuse(*args, **kwargs):
        from django.db import OperationalError

        raise OperationalError("connection refused")

    monkeypatch.setattr(connections["default"], "cursor", refuse)
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["database"].startswith("unreachable")


def test_metrics_are_scraped_with_the_token(client, settings):
    settings.METRICS_TOKEN = "s3cret-token"
    QueuedTask.objects.create(task="teams.tasks.send_invitation_email", args=[1])
    StripeEventOutcome.objects.create(event_id="evt_1", type="invoice.paid", status="failed")
    metrics.inc("tally_cache_errors_total", operation="get")

    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 404
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = _parse(response.content.decode())
    assert samples["tally_outbox_depth"] == 1
    assert samples["tally_stripe_events_failed"] == 1
    assert samples["tally_meter_reports_failed"] == 0
    errors = [
        v for k, v in samples.items() if k.startswith("tally_cache_errors_total{") and 'operation="get"' in k
    ]
    assert errors and errors[0] >= 1
    assert any(k.startswith("tally_rate_limit_refusals_total") for k in samples)


def test_metrics_without_a_token_answer_loopback_only(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 404


def _parse(text: str) -> dict[str, float]:
    """Prometheus' text format: every line is a comment or `name{labels} value`."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, value = line.rsplit(" ", 1)
        samples[name] = float(value)
    return samples


def test_metrics_time_each_request_once_by_its_view(client, settings):
    settings.METRICS_TOKEN = ""
    sample = 'tally_http_request_duration_seconds_count{method="GET",view="healthz"}'
    before = _parse(client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()).get(sample, 0)
    client.get("/healthz")
    client.get("/no-such-page/")
    samples = _parse(client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode())
    assert samples[sample] == before + 1
    assert samples['tally_http_request_duration_seconds_count{method="GET",view="unresolved"}'] >= 1
