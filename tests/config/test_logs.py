"""Structured logs: a request's id on every line it causes, in the web process and in a worker."""

import json
import logging
import threading

import pytest
import redis
from celery import shared_task
from celery.contrib.testing.worker import start_worker
from django.conf import settings as django_settings
from django.urls import path

from common import logs
from config.celery import app

log = logging.getLogger("tally.test")


class Lines(logging.Handler):
    """Formats as production does (the JSON formatter behind the request id filter)."""

    def __init__(self):
        super().__init__()
        self.setFormatter(logs.JsonFormatter())
        self.addFilter(logs.RequestIdFilter())
        self.lines: list[dict] = []
        self.arrived = threading.Event()

    def emit(self, record):
        self.lines.append(json.loads(self.format(record)))
        self.arrived.set()


@pytest.fixture
def lines():
    handler = Lines()
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    yield handler
    log.removeHandler(handler)


@shared_task(name="tests.config.test_logs.say")
def say(message: str) -> None:
    log.info(message)


def _view(request):
    from django.http import HttpResponse

    log.info("in the view")
    say.delay("from the task")
    return HttpResponse("ok")


urlpatterns = [path("logged/", _view)]


@pytest.fixture
def logged_view(settings):
    settings.ROOT_URLCONF = __name__


def test_it_answers_the_request_id_it_was_given_and_logs_under_it(client, lines, logged_view, db):
    response = client.get("/logged/", HTTP_X_REQUEST_ID="lb-7f3a.1")

    assert response["X-Request-ID"] == "lb-7f3a.1"
    # The task ran in-process (eager) and kept the request's id.
    assert [(line["message"], line["request_id"]) for line in lines.lines] == [
        ("in the view", "lb-7f3a.1"),
        ("from the task", "lb-7f3a.1"),
    ]
    assert logs.request_id.get() == ""  # nothing leaks into the next request of this thread


@pytest.mark.parametrize("given", [None, "", "x" * 65, 'a"b', "two\nlines", "sp ace"])
def test_it_makes_up_an_id_when_the_header_is_missing_or_not_sane(client, lines, logged_view, db, given):
    headers = {} if given is None else {"HTTP_X_REQUEST_ID": given}

    response = client.get("/logged/", **headers)

    rid = response["X-Request-ID"]
    assert rid != given and len(rid) == 32 and int(rid, 16) >= 0
    assert {line["request_id"] for line in lines.lines} == {rid}


def test_it_writes_one_json_object_a_line_with_the_exception(lines):
    token = logs.request_id.set("r-1")
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("it failed: %s", "why")
    finally:
        logs.request_id.reset(token)

    (line,) = lines.lines
    assert line["level"] == "ERROR" and line["logger"] == "tally.test"
    assert line["message"] == "it failed: why" and line["request_id"] == "r-1"
    assert "ValueError: boom" in line["exception"]
    assert line["time"].endswith("+00:00")


@pytest.mark.django_db(transaction=True)
def test_it_carries_the_request_id_into_a_worker(lines):
    """A real worker on Redis (in a thread of its own, so with none of this thread's context)
    logs the task under the id of the request that queued it."""
    broker = django_settings.REDIS_URL
    redis.Redis.from_url(broker).flushdb()
    saved = {k: app.conf[k] for k in ("broker_url", "task_always_eager")}
    app.conf.update(broker_url=broker, task_always_eager=False)
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING"):
            token = logs.request_id.set("req-from-the-web")
            try:
                say.apply_async(args=["in the worker"])
            finally:
                logs.request_id.reset(token)
            assert lines.arrived.wait(20), "the worker did not run the task"
    finally:
        app.conf.update(saved)
        redis.Redis.from_url(broker).flushdb()

    assert [(line["message"], line["request_id"]) for line in lines.lines] == [
        ("in the worker", "req-from-the-web")
    ]
