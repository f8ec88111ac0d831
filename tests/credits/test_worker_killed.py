"""A worker process killed in the middle of a task (the kernel's OOM killer, a node lost): the
task is handed out again (`acks_late`, `task_reject_on_worker_lost`) and its effect happens once.

The worker here is a real `celery worker` process on Redis, against the test database and the
simulator; the test kills its pool process with SIGKILL while the task waits on Stripe.
"""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import redis
import requests
from django.conf import settings as django_settings
from django.db import connection

from config.celery import app
from credits import services
from credits.models import CreditRecharge
from credits.tasks import expire_credits
from tests.billing.test_stripe_faults import attempts, objects
from tests.credits.helpers import assert_reconciles, balance_of
from tests.credits.test_purchases import _enable, buy

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


def _wait(what, until, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if until():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Worker:
    """`celery worker` with one pool process, in a process of its own."""

    def __init__(self, tmp_path, broker: str, sim_url: str):
        db = django_settings.DATABASES["default"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_SETTINGS"))}
        env.update(
            DJANGO_SETTINGS_MODULE="tests.settings",
            DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            REDIS_URL=broker,
            STRIPE_API_HOST=sim_url,
            CELERY_TASK_ALWAYS_EAGER="false",
        )
        self.log = tmp_path / "worker.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "prefork",
             "--concurrency", "1", "--loglevel", "INFO", "--without-mingle", "--without-gossip",
             "--without-heartbeat", "--hostname", "killed@%h"],
            cwd=ROOT, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        _wait("the worker to start", lambda: "ready." in self.text(), timeout=90)

    def text(self) -> str:
        return self.log.read_text()

    def runs(self, task: str) -> tuple[int, int]:
        """How many times the task was handed to this worker, and how many runs ended well."""
        lines = self.text().splitlines()
        received = sum(1 for line in lines if f"{task}[" in line and line.endswith("received"))
        return received, sum(1 for line in lines if f"{task}[" in line and "succeeded" in line)

    def pool_process(self) -> int:
        pid = self.process.pid
        (child,) = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return int(child)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture
def worker(tmp_path, shop, stripe_sim, settings):
    broker = django_settings.REDIS_URL
    redis.Redis.from_url(broker).flushdb()
    saved = {k: app.conf[k] for k in ("broker_url", "task_always_eager")}
    app.conf.update(broker_url=broker, task_always_eager=False)
    started = Worker(tmp_path, broker, settings.STRIPE_API_HOST)
    try:
        yield started
    finally:
        started.stop()
        connection.close()
        app.conf.update(saved)
        redis.Redis.from_url(broker).flushdb()


def test_an_auto_recharge_whose_worker_was_killed_charges_once(shop, stripe_sim, org, owner, worker):
    buy(org, owner, "tokens-1k")  # saves the card; 1,000 credits, granted by the worker
    _wait("the purchase's credits", lambda: balance_of(org) == 1_000)
    _enable(org, owner, threshold=500)
    # The charge answers late, so the pool process is inside the Stripe call when it dies.
    armed = requests.post(
        f"{django_settings.STRIPE_API_HOST}/_sim/faults",
        json={"path": "/v1/payment_intents", "method": "POST", "kind": "latency", "latency_ms": 6000},
        timeout=10,
    )
    assert armed.status_code == 200, armed.text

    services.credits_consume(organization=org, amount=600, idempotency_key="crosses")

    _wait("the recharge to start", lambda: CreditRecharge.objects.filter(status="pending").exists())
    time.sleep(1)  # the request to Stripe is on its way
    os.kill(worker.pool_process(), signal.SIGKILL)

    # The broker hands the task out again; it finds the recharge in flight and leaves it to the
    # periodic job, which charges it under the same idempotency key once it is no longer fresh.
    _wait("the task to run again", lambda: worker.runs("credits.tasks.auto_recharge") == (2, 1))
    assert "exited with 'signal 9 (SIGKILL)'" in worker.text()
    recharge = CreditRecharge.objects.get()
    assert recharge.status == "pending"
    stale = recharge.created_at - timedelta(minutes=6)
    CreditRecharge.objects.filter(pk=recharge.pk).update(created_at=stale)
    expire_credits.delay()
    _wait("the recharge to finish", lambda: CreditRecharge.objects.get().status == "succeeded")

    # The dead process's request, slowed on its way, reaches Stripe after the resumed one and
    # is answered with the same PaymentIntent: one key, one charge.
    _wait("the first request to arrive", lambda: len(attempts(stripe_sim, "/v1/payment_intents")) == 2)
    assert len({t["idempotency_key"] for t in attempts(stripe_sim, "/v1/payment_intents")}) == 1
    charges = [p for p in objects(stripe_sim, "payment_intent") if p["metadata"].get("tally_recharge")]
    assert len(charges) == 1
    assert balance_of(org) == 400 + 10_000
    assert_reconciles()
