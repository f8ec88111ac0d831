"""`make demo` needs no services: SQLite, in-process Celery, no Redis. These run the demo's own
set-up steps in clean processes: the landing page and a demo login work, and the demo's money
actions survive the simulator delivering webhooks into the same SQLite file at the same time."""

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]


def _demo_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "STRIPE_", "DATABASE_", "REDIS_", "CELERY_", "SITE_URL"))
    }
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        DJANGO_DEBUG="true",
        DJANGO_SETTINGS_MODULE="config.settings",
        TALLY_DEMO="true",
        **extra,
    )
    return env


def _manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def simulator(tmp_path_factory):
    """The Stripe simulator as `make demo` runs it: its own process, background deliveries."""
    log = (tmp_path_factory.mktemp("sim") / "sim.log").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "stripe_sim", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    line = process.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:\d+", line)
    assert match, line
    yield match.group(0)
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory, simulator):
    """The demo as `make demo` serves it: migrate, webhook endpoint, catalog, seed, runserver."""
    tmp_path = tmp_path_factory.mktemp("demo")
    port = _free_port()
    site = f"http://127.0.0.1:{port}"
    env = _demo_env(tmp_path, STRIPE_API_HOST=simulator, SITE_URL=site)
    _manage(env, "migrate", "--no-input", "-v0")
    _manage(env, "stripe_setup", "--site-url", site)
    _manage(env, "catalog_sync")
    slug = re.search(r"\(/o/([\w-]+)/\)", _manage(env, "demo_seed")).group(1)
    log = (tmp_path / "server.log").open("w+")
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    for _ in range(100):
        try:
            requests.get(site + "/", timeout=1)
            break
        except requests.ConnectionError:
            time.sleep(0.1)
    yield site, slug, log
    server.terminate()
    server.wait(timeout=10)


def _log_in(site: str) -> requests.Session:
    browser = requests.Session()
    browser.get(site + "/login/", timeout=10)
    home = browser.post(
        site + "/login/",
        data={
            "username": "owner@example.com",
            "password": "tally-demo-2026",
            "csrfmiddlewaretoken": browser.cookies["csrftoken"],
        },
        timeout=10,
    )
    assert home.status_code == 200 and "/o/" in home.url, home.url
    return browser


def test_the_demo_runs_on_sqlite_without_redis_and_its_login_works(demo_server):
    site, slug, _ = demo_server
    assert requests.get(site + "/", timeout=10).status_code == 200
    _log_in(site)


def test_the_demo_organization_is_a_paying_customer_with_a_real_subscription(demo_server):
    site, slug, _ = demo_server
    page = _log_in(site).get(f"{site}/o/{slug}/billing/", timeout=10).text
    assert "Pro (monthly)" in page and "Active" in page
    assert "Cancel at period end" in page and "Payment methods" in page
    assert re.search(r"Period</td><td>\d+ \w+ \d{4} – \d+ \w+ \d{4}", page), "a period with an end"
    assert "Start 14-day trial" not in page
    upcoming = _log_in(site).get(f"{site}/o/{slug}/billing/upcoming/", timeout=10).text
    assert "$49" in upcoming and "Due " in upcoming


def _resend_all(simulator: str, stop: threading.Event) -> None:
    """Keep redelivering every event the simulator has sent, as fast as it will."""
    while not stop.is_set():
        for delivery in requests.get(f"{simulator}/_sim/deliveries", timeout=10).json():
            if stop.is_set():
                return
            requests.post(f"{simulator}/_sim/deliveries/{delivery['id']}/resend", timeout=10)


def test_it_survives_concurrent_webhook_deliveries_during_cancel_resume_and_refund(demo_server, simulator):
    site, slug, log = demo_server
    browser = _log_in(site)
    billing = f"{site}/o/{slug}/billing/"
    page = browser.get(billing, timeout=10).text
    # The seeded month was paid moments ago: the money-back refund is on offer.
    assert "Cancel at period end" in page and "Cancel and refund" in page

    stop = threading.Event()
    resenders = [threading.Thread(target=_resend_all, args=(simulator, stop)) for _ in range(3)]
    for thread in resenders:
        thread.start()
    try:
        for action, expected in [
            ("cancel", "Keep my subscription"),
            ("resume", "Cancel at period end"),
            ("cancel", "Keep my subscription"),
            ("resume", "Cancel at period end"),
            ("refund", "cancelled and its first payment refunded in full"),
        ]:
            answer = browser.post(
                f"{billing}{action}/", data={"csrfmiddlewaretoken": browser.cookies["csrftoken"]}, timeout=30
            )
            assert answer.status_code == 200, (action, re.findall(r"<title>(.*?)</title>", answer.text, re.S))
            assert expected in answer.text, action
    finally:
        stop.set()
        for thread in resenders:
            thread.join(timeout=30)
    # The message is backed by the money: the paid month came back and the subscription ended.
    assert "−$49 refunded" in answer.text and 'data-testid="status">Canceled' in answer.text

    # Let the simulator finish what is queued, then read every attempt it made.
    deadline = time.time() + 30
    while time.time() < deadline:
        deliveries = requests.get(f"{simulator}/_sim/deliveries", timeout=10).json()
        if all(d["status"] != "pending" for d in deliveries):
            break
        time.sleep(0.2)
    attempts = [a for d in deliveries for a in d["attempts"]]
    assert len(attempts) > 20
    # The seed's own deliveries found no server listening yet (no status): those are retried.
    # Every delivery that reached the server was handled.
    failed = [(a["status_code"], a["body"][:300]) for a in attempts if a["status_code"] not in (None, 200)]
    assert failed == []
    log.seek(0)
    assert "database is locked" not in log.read()
