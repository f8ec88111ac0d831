"""/metrics on a node of several processes: two gunicorn workers and Celery-like processes share
PROMETHEUS_MULTIPROC_DIR, and one scrape of the real endpoint shows their counters summed."""

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
PORT = 25611
TOKEN = "node-scrape-token"

pytestmark = pytest.mark.django_db(transaction=True)


def _env(directory: Path) -> dict:
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY="metrics-test-secret-key-0123456789-abcdefghijkl",
        ALLOWED_HOSTS="127.0.0.1",
        # The test database, which this test's transactional fixture keeps migrated.
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        METRICS_TOKEN=TOKEN,
        PROMETHEUS_MULTIPROC_DIR=str(directory),
        LOG_LEVEL="ERROR",
        PYTHONPATH=str(ROOT),
    )
    return env


def _get(path: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = requests.get(f"http://127.0.0.1:{PORT}{path}", headers=headers, timeout=30)
    return response.status_code, response.text


@pytest.fixture
def node(tmp_path):
    """A node: gunicorn with two workers, its counters in a fresh shared directory."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    gunicorn = Path(sys.executable).with_name("gunicorn")
    server = subprocess.Popen(
        [str(gunicorn), "config.wsgi", "-b", f"127.0.0.1:{PORT}", "--workers", "2", "--log-level", "warning"],
        env=_env(directory),
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120  # workers boot slowly on a busy machine
        while True:
            try:
                if _get("/healthz")[0] == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail("gunicorn did not start")
            time.sleep(0.2)
        yield directory
    finally:
        server.terminate()
        server.wait(timeout=30)


def _count_in_other_process(directory: Path, script: str) -> None:
    """Run `script` in a process of its own, as a Celery worker of the node is."""
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + script],
        env=_env(directory),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def _samples(text: str) -> dict[str, float]:
    """`name{a="1",b="2"} value` lines, keyed with their labels in name order."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            if "{" in name:
                name, labels = name[:-1].split("{", 1)
                name += "{" + ",".join(sorted(labels.split(","))) + "}"
            samples[name] = float(value)
    return samples


def test_one_scrape_sums_the_counters_of_every_process_of_the_node(node):
    # Requests answered by both workers: each observes its own, the scrape shows them all. One
    # request sent half-way holds the worker that took it (a sync worker reads it to its end),
    # so the other forty go to the other worker; then it is finished.
    healthz = 'tally_http_request_duration_seconds_count{method="GET",view="healthz"}'
    before = _samples(_get("/metrics", TOKEN)[1]).get(healthz, 0)  # the fixture's probes
    held = socket.create_connection(("127.0.0.1", PORT), timeout=20)
    held.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    time.sleep(1)
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert set(pool.map(lambda _: _get("/healthz")[0], range(40))) == {200}
    held.sendall(b"Connection: close\r\n\r\n")
    assert held.recv(100).startswith(b"HTTP/1.1 200")
    held.close()
    workers = {p.name.rsplit("_", 1)[-1] for p in node.glob("histogram_*.db")}
    assert len(workers) == 2, workers  # both gunicorn workers answered some

    # Two more processes of the node count, then exit: a Celery task that failed, cache errors.
    failing = (
        "from config.celery import app\n"
        "@app.task(name='tests.boom')\n"
        "def boom():\n"
        "    raise ValueError('boom')\n"
        "boom.apply()\n"
    )
    _count_in_other_process(node, failing)
    errors = (
        "from teams import metrics\n"
        "for _ in range(3):\n"
        "    metrics.inc('tally_cache_errors_total', operation='get')\n"
    )
    _count_in_other_process(node, errors)
    _count_in_other_process(node, errors)

    status, body = _get("/metrics", TOKEN)
    assert status == 200
    samples = _samples(body)
    assert samples[healthz] == before + 41
    assert samples['tally_task_failures_total{task="tests.boom"}'] == 1
    assert samples['tally_cache_errors_total{operation="get"}'] == 6
    assert samples["tally_outbox_depth"] == 0  # Tally's gauges, read from the database, are kept
    # A second scrape, answered by either worker, says the same.
    assert _samples(_get("/metrics", TOKEN)[1])['tally_cache_errors_total{operation="get"}'] == 6
    assert _get("/metrics")[0] == 404  # still behind its token
