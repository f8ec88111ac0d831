"""PostgreSQL really restarted under load (issue #19): while it is down every request gets a
clean 503 with `Retry-After` (`service_unavailable` under /api/), never a 500; once it is back the
same gunicorn processes answer 200 again, without a restart; and no request lost or doubled money.

The server restarted is a private one, initialised in a temporary directory on a free loopback
port, so the machine's shared PostgreSQL is never touched. Its database is a copy of the migrated
test database (migrating from nothing takes minutes on a small machine) that `migrate` then
confirms is complete. Tally runs under gunicorn against it.
"""

import contextlib
import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
AMOUNT = 7


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivatePostgres:
    """A PostgreSQL cluster of its own, owned by the `postgres` user (pg_ctl refuses root)."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tally-pg-"))
        self.data = self.dir / "data"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.dir, account.pw_uid, account.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def _run(self, tool: str, *args) -> None:
        command = [*self.as_user, str(self.bin / tool), *map(str, args)]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", self.data, "-l", self.dir / "log", "-o", options, "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def url(self, name: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def copy_database(self, source: dict, name: str) -> None:
        """The test database's schema and rows, catalog and migration history included."""
        here = ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        subprocess.run([str(self.bin / "createdb"), *here, name], check=True, timeout=30)
        dump = subprocess.Popen(
            [str(self.bin / "pg_dump"), "-h", source["HOST"], "-p", str(source["PORT"]), "-U",
             source["USER"], "--no-owner", source["NAME"]],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        subprocess.run(
            [str(self.bin / "psql"), *here, "-q", "-v", "ON_ERROR_STOP=1", "-d", name],
            stdin=dump.stdout, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        assert dump.wait(30) == 0

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_postgres(transactional_db):
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin to start a private server")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no `postgres` user to run pg_ctl as")
    server = PrivatePostgres(bin_dir)
    try:
        server.start()
        server.copy_database(settings.DATABASES["default"], "tally")
        yield server
    finally:
        server.destroy()


def _env(database_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=database_url,
        REDIS_URL=settings.REDIS_URL,
        LOG_LEVEL="ERROR",
        PYTHONPATH=str(ROOT),
    )
    return env


def _manage(env: dict, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


class Gunicorn:
    def __init__(self, env: dict, log: Path):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        gunicorn = Path(sys.executable).with_name("gunicorn")
        self.log = log
        self.process = subprocess.Popen(
            [str(gunicorn), "config.wsgi", "-b", f"127.0.0.1:{self.port}", "-k", "gthread", "-w", "2",
             "--threads", "2", "--timeout", "60", "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        try:
            while len(self.workers()) < 2 or not self._answers():
                assert self.process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "gunicorn did not start: " + log.read_text()
                time.sleep(0.2)
        except BaseException:
            self.stop()  # the test's `finally` is not reached: no server left behind
            raise

    def _answers(self) -> bool:
        try:
            return requests.get(f"{self.base}/healthz", timeout=5).status_code == 200
        except requests.RequestException:  # not listening yet, or a worker still loading Django
            return False

    def workers(self) -> set[int]:
        pid = self.process.pid
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


class Load:
    """Threads calling consume, a page and /readyz in turn; every answer kept with its timing.
    A consume answered 503 is remembered, to be retried under the same Idempotency-Key."""

    def __init__(self, base: str, seed: dict, threads: int = 3):
        self.base, self.seed = base, seed
        self.answers: list[dict] = []
        self.refused_keys: list[str] = []
        self.keys: list[str] = []
        self.lock = threading.Lock()
        self.running = True
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def consume(self, key: str) -> requests.Response:
        return requests.post(
            f"{self.base}/api/v1/credits/consume",
            json={"amount": AMOUNT},
            headers={"Authorization": f"Bearer {self.seed['secret']}", "Idempotency-Key": key},
            timeout=30,
        )

    def _one(self, kind: str) -> None:
        start = time.monotonic()
        key = None
        if kind == "consume":
            key = uuid.uuid4().hex
            with self.lock:
                self.keys.append(key)
            response = self.consume(key)
        elif kind == "page":
            response = requests.get(
                f"{self.base}/o/{self.seed['slug']}/billing/",
                cookies={settings.SESSION_COOKIE_NAME: self.seed["session"]},
                allow_redirects=False,
                timeout=30,
            )
        else:
            response = requests.get(f"{self.base}/readyz", timeout=30)
        answer = {
            "kind": kind,
            "start": start,
            "end": time.monotonic(),
            "status": response.status_code,
            "retry_after": response.headers.get("Retry-After"),
            "body": response.text[:300],
        }
        with self.lock:
            self.answers.append(answer)
            if kind == "consume" and response.status_code >= 300:
                self.refused_keys.append(key)

    def _loop(self) -> None:
        while self.running:
            for kind in ("consume", "page", "readyz"):
                self._one(kind)
            time.sleep(0.02)

    def between(self, start: float, end: float) -> list[dict]:
        with self.lock:
            return [a for a in self.answers if a["start"] >= start and a["end"] <= end]

    def stop(self) -> None:
        self.running = False
        for thread in self.threads:
            thread.join(60)


def _wait(what: str, until, timeout: float, seen=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"timed out waiting for {what}; {seen()}"
        time.sleep(0.1)


def test_a_postgres_restart_under_load_is_503_then_recovers_without_a_restart(private_postgres, tmp_path):
    env = _env(private_postgres.url("tally"))
    _manage(env, "manage.py", "migrate", "--no-input")  # anything the copy lacks
    seed = json.loads(_manage(env, "-m", "tests.faults.private_tally", "seed"))
    server = Gunicorn(env, tmp_path / "gunicorn.log")
    try:
        workers = server.workers()
        page = f"{server.base}/o/{seed['slug']}/billing/"
        cookies = {settings.SESSION_COOKIE_NAME: seed["session"]}
        assert requests.get(page, cookies=cookies, allow_redirects=False, timeout=30).status_code == 200
        load = Load(server.base, seed)
        try:
            _wait("answers before the restart", lambda: len(load.answers) >= 9, timeout=20)
            private_postgres.stop()
            down_since = time.monotonic()
            _wait("answers while PostgreSQL is down", lambda: len(load.between(down_since, 1e12)) >= 12, 20)
            down_until = time.monotonic()
            private_postgres.start()
            up_since = time.monotonic()
            _wait(
                "every kind of request to succeed again",
                lambda: {a["kind"] for a in load.between(up_since, 1e12) if a["status"] < 300}
                == {"consume", "page", "readyz"},
                timeout=20,
                seen=lambda: [(a["kind"], a["status"], a["body"][:80]) for a in load.between(up_since, 1e12)][
                    -12:
                ],
            )
        finally:
            load.stop()

        statuses = {a["status"] for a in load.answers}
        # consume answers 201 (or 200 for a replay), the page and /readyz 200; nothing else.
        assert statuses <= {200, 201, 503}, [a for a in load.answers if a["status"] not in (200, 201, 503)]
        down = load.between(down_since, down_until)
        assert {a["kind"] for a in down} == {"consume", "page", "readyz"}
        for answer in down:
            assert answer["status"] == 503, answer
        for answer in (a for a in load.answers if a["status"] == 503):
            if answer["kind"] == "readyz":
                assert json.loads(answer["body"])["status"] == "unavailable", answer
                continue
            assert answer["retry_after"] == "5", answer
            if answer["kind"] == "consume":
                assert json.loads(answer["body"])["code"] == "service_unavailable", answer
        # The same processes serve: gunicorn did not replace a worker to get a new connection.
        assert server.process.poll() is None
        assert server.workers() == workers
        # A client retries what was refused, under the same key: it is spent once.
        for key in load.refused_keys:
            assert load.consume(key).status_code in (200, 201)
    finally:
        server.stop()

    ledger = json.loads(_manage(env, "-m", "tests.faults.private_tally", "audit"))
    assert ledger["breaches"] == []
    assert sorted(ledger["consume_keys"]) == sorted(load.keys)  # none lost, none doubled
    assert ledger["balance"] == seed["balance"] - AMOUNT * len(load.keys)
