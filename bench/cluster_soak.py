"""The cluster soak (`make soak-cluster`): Tally as it runs on more than one machine, under a
mixed load and a schedule of faults, then every money invariant checked.

Two gunicorn instances, two Celery workers and one beat, against one PostgreSQL and one Redis,
with the Stripe simulator (`python -m stripe_sim`) as Stripe. 1,000 organizations, each with an
API key and credits; a few subscribe through Checkout during the run and change seats. Client
threads send a mixed load to both instances in turn for SOAK_CLUSTER_SECONDS (default 60):
consume, reserve then confirm, entitlement checks, usage batches, metered API calls, webhooks
(Stripe's, from the checkouts and seat changes) and checkouts. Meanwhile the fault schedule
arms the simulator's faults (`/_sim/faults`: 500s and latency; `/_sim/config`: webhook deliveries
delayed and duplicated) and kills a Celery worker with SIGKILL, then starts it again.

Afterwards: refused writes are retried under their Idempotency-Key (as a client does), the
system drains, and the invariants are checked with the reconcile functions (`credits_reconcile`:
I2, I3; `billing_reconcile`: I1, I4, I5 and Stripe's view of every subscription), plus: every
consume and confirmed reservation is in the ledger once, and the counted API calls equal the
metered requests that succeeded. Throughput, errors and p99 latencies are printed; the process
exits 1 if an invariant fails. The database (DATABASE_URL, its name must contain "soak") is
emptied at the start of each run.
"""

import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tally_soak_cluster")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/11")
os.environ.setdefault("DJANGO_DEBUG", "false")
# The driver runs in production settings too: what it queues (a seat change's sync) goes to the
# workers through Redis, as on a web node, never in-process.
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
os.environ.setdefault("DJANGO_SECRET_KEY", "soak-only-secret-key-0123456789-abcdefghijklmn")
os.environ["CELERY_TASK_ALWAYS_EAGER"] = "false"

PORT = int(os.environ.get("SOAK_CLUSTER_PORT", "25300"))
SIM_PORT, WEB_PORTS = PORT, (PORT + 1, PORT + 2)
os.environ["STRIPE_API_HOST"] = f"http://127.0.0.1:{SIM_PORT}"

from _setup import ROOT, setup_django  # noqa: E402

setup_django()

import redis  # noqa: E402
import requests  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db.models import Sum  # noqa: E402
from django.test import Client  # noqa: E402

from billing import entitlements  # noqa: E402
from billing.catalog import catalog_apply, load_catalog  # noqa: E402
from billing.metering.api_calls import api_calls_flush  # noqa: E402
from billing.models import OrgSubscription, Plan, UsageEvent  # noqa: E402
from billing.reconcile import (  # noqa: E402
    billing_invariants_check,
    payments_reconcile,
    subscription_reconcile,
)
from credits import services as credit_services  # noqa: E402
from credits.models import CreditTransaction, TransactionType  # noqa: E402
from credits.reconcile import credit_invariants_check  # noqa: E402
from teams import api_keys  # noqa: E402
from teams.models import Membership, Organization, QueuedTask, Role, User  # noqa: E402

ORGS = int(os.environ.get("SOAK_CLUSTER_ORGS", "1000"))
SECONDS = int(os.environ.get("SOAK_CLUSTER_SECONDS", "60"))
CLIENTS = int(os.environ.get("SOAK_CLUSTER_CLIENTS", "6"))
CHECKOUTS = int(os.environ.get("SOAK_CLUSTER_CHECKOUTS", "6"))
SETTLE = int(os.environ.get("SOAK_CLUSTER_SETTLE", "180"))
PLAN = "team_monthly"  # billed per seat: seat changes reach Stripe
RUN = uuid.uuid4().hex[:8]
LOGS = ROOT / "test-artifacts" / f"soak-cluster-{RUN}"
SIM = f"http://127.0.0.1:{SIM_PORT}"
WEB = [f"http://127.0.0.1:{p}" for p in WEB_PORTS]


# --- processes ------------------------------------------------------------------------------


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_SETTINGS")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=env.get("DJANGO_SECRET_KEY", "soak-only-secret-key-0123456789-abcdefghijklmn"),
        ALLOWED_HOSTS="127.0.0.1",
        CELERY_TASK_ALWAYS_EAGER="false",
        PYTHONPATH=str(ROOT),
    )
    return env


class Proc:
    def __init__(self, name: str, command: list[str]):
        self.name, self.command = name, command
        self.start()

    def start(self) -> None:
        log = (LOGS / f"{self.name}.log").open("a")
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _worker(n: int) -> Proc:
    return Proc(
        f"worker{n}",
        [_bin("celery"), "-A", "config", "worker", "--pool", "prefork", "--concurrency", "1",
         "--loglevel", "WARNING", "--without-mingle", "--without-gossip", "--hostname", f"soak{n}@%h"],
    )  # fmt: skip


def _wait_http(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=5)
            return
        except requests.RequestException:
            time.sleep(0.3)
    raise RuntimeError(f"nothing answers at {url}")


# --- set-up ---------------------------------------------------------------------------------


def reset() -> None:
    """The soak's database starts empty (the simulator does too, so what an earlier run left
    would be subscriptions Stripe never heard of): it must be a database of its own."""
    name = settings.DATABASES["default"]["NAME"]
    if "soak" not in name:
        raise SystemExit(f"{name}: the cluster soak empties its database; use one named *soak*")
    call_command("flush", interactive=False, verbosity=0)


def prepare() -> dict:
    """Organizations on an unlimited plan with given credits and a key; CHECKOUTS of them on
    the free plan with an owner who subscribes through Checkout during the run."""
    catalog_apply(load_catalog())
    settings.CREDITS_WELCOME_BONUS = 0
    enterprise = Plan.objects.get(key="enterprise")
    owner = User.objects.create_user(email=f"soak-{RUN}@example.com")
    orgs, secrets, buyers = [], [], []
    for i in range(ORGS):
        org = Organization.objects.create(name=f"soak {RUN} {i}", slug=f"soak-{RUN}-{i}")
        orgs.append(org)
        if i < CHECKOUTS:
            person = User.objects.create_user(email=f"soak-{RUN}-owner{i}@example.com")
            Membership.objects.create(organization=org, user=person, role=Role.OWNER)
            client = Client()
            client.force_login(person)
            buyers.append({"slug": org.slug, "session": client.cookies[settings.SESSION_COOKIE_NAME].value})
        else:
            entitlements.subscription_set(organization=org, plan=enterprise, status="active")
        credit_services.credits_grant(
            organization=org, amount=10**9, source="promotion", idempotency_key=f"soak-{RUN}"
        )
        _, secret = api_keys.api_key_create(organization=org, actor=owner, name="soak")
        secrets.append(secret)
    return {"orgs": orgs, "secrets": secrets[CHECKOUTS:], "buyers": buyers}


# --- load -----------------------------------------------------------------------------------


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latency = defaultdict(list)
        self.status = defaultdict(lambda: defaultdict(int))
        self.consumed: set[str] = set()  # every consume key sent (to be in the ledger once)
        self.retry: list[tuple] = []  # writes refused or lost on the way, retried after the run
        self.metered: set[str] = set()  # metered calls that succeeded (each one api_calls unit)
        self.confirmed: set[str] = set()

    def add(self, op: str, status: int, seconds: float) -> None:
        with self.lock:
            self.latency[op].append(seconds)
            self.status[op][status] += 1


def _call(stats: Stats, op: str, method: str, path: str, secret: str, body=None, key=None):
    base = random.choice(WEB)
    headers = {"Authorization": f"Bearer {secret}"}
    if key:
        headers["Idempotency-Key"] = key
    start = time.monotonic()
    try:
        response = requests.request(method, base + path, json=body, headers=headers, timeout=30)
        status = response.status_code
    except requests.RequestException:
        response, status = None, 0
    stats.add(op, status, time.monotonic() - start)
    return response


def _client_loop(stats: Stats, secrets: list[str], until: float) -> None:
    ops = ["consume"] * 8 + ["reserve"] * 3 + ["check"] * 4 + ["usage"] * 2 + ["metered"] * 3
    while time.monotonic() < until:
        secret = random.choice(secrets)
        op = random.choice(ops)
        key = uuid.uuid4().hex
        if op == "consume":
            with stats.lock:
                stats.consumed.add(key)
            r = _call(stats, op, "POST", "/api/v1/credits/consume", secret, {"amount": 1}, key)
            if r is None or r.status_code >= 500:
                stats.retry.append(("consume", secret, key))
        elif op == "reserve":
            r = _call(stats, op, "POST", "/api/v1/credits/reservations", secret, {"amount": 3}, key)
            if r is not None and r.status_code == 201:
                code = r.json()["id"]
                c = _call(stats, "confirm", "POST", f"/api/v1/credits/reservations/{code}/confirm", secret,
                          {"amount": 2}, key + "-c")  # fmt: skip
                if c is not None and c.status_code == 200:
                    with stats.lock:
                        stats.confirmed.add(code)
        elif op == "check":
            _call(stats, op, "POST", "/api/v1/entitlements/check", secret, {"feature": "priority_support"})
        elif op == "usage":
            events = [{"id": f"{key}-{i}", "meter": "ai_generations", "value": 1} for i in range(20)]
            _call(stats, op, "POST", "/api/v1/usage/events", secret, {"events": events}, key)
        else:
            r = _call(stats, op, "GET", "/api/v1/projects/", secret, key=key)
            if r is not None and r.status_code == 200:
                with stats.lock:
                    stats.metered.add(key)


def _checkout(stats: Stats, buyer: dict) -> None:
    """The owner's browser: the billing page, Checkout started, paid on Stripe's page."""
    session = requests.Session()
    session.cookies.set(settings.SESSION_COOKIE_NAME, buyer["session"])
    base = random.choice(WEB)
    start = time.monotonic()
    try:
        page = session.get(f"{base}/o/{buyer['slug']}/billing/", timeout=30)
        # The cookie is Secure (production settings) and this is plain http on loopback: the
        # browser here is told to send it anyway.
        token = page.cookies.get(settings.CSRF_COOKIE_NAME, "")
        session.cookies.set(settings.CSRF_COOKIE_NAME, token)
        started = session.post(
            f"{base}/o/{buyer['slug']}/billing/checkout/",
            data={"plan": PLAN, "csrfmiddlewaretoken": token},
            headers={"Referer": base + "/", "X-CSRFToken": token},
            allow_redirects=False,
            timeout=60,
        )
        target = started.headers.get("Location", "")
        if page.status_code != 200 or not target.startswith(SIM):
            stats.add("checkout", started.status_code if started.status_code != 302 else 599, 0)
            return
        paid = requests.post(
            target, data={"card_number": "4242424242424242", "email": "owner@example.com"},
            allow_redirects=False, timeout=60,
        )  # fmt: skip
        stats.add("checkout", paid.status_code, time.monotonic() - start)
    except requests.RequestException:
        stats.add("checkout", 0, time.monotonic() - start)


def _buyers_loop(stats: Stats, buyers: list[dict], until: float) -> None:
    """Checkouts spread over the run; then seat changes (members added and removed, which the
    workers push to Stripe) on the organizations that subscribed."""
    step = max(1.0, (until - time.monotonic()) * 0.5 / max(1, len(buyers)))
    for buyer in buyers:
        _checkout(stats, buyer)
        time.sleep(step)
    n = 0
    while time.monotonic() < until:
        for org in Organization.objects.filter(slug__in=[b["slug"] for b in buyers]):
            if not OrgSubscription.objects.filter(organization=org, plan__key=PLAN).exists():
                continue
            start = time.monotonic()
            n += 1
            extra = list(Membership.objects.filter(organization=org, role=Role.MEMBER))
            if len(extra) >= 2:
                extra[0].delete()
            else:
                user = User.objects.create_user(email=f"soak-{RUN}-m{n}@example.com")
                Membership.objects.create(organization=org, user=user, role=Role.MEMBER)
            stats.add("seat_change", 200, time.monotonic() - start)
        time.sleep(2)


def _fault_schedule(workers: list[Proc], t0: float, log: list[str]) -> None:
    def at(second: float, what: str, action) -> None:
        time.sleep(max(0.0, t0 + second - time.monotonic()))
        action()
        log.append(f"t={time.monotonic() - t0:5.1f}s {what}")

    def fault(spec: dict) -> None:
        requests.post(f"{SIM}/_sim/faults", json=spec, timeout=10).raise_for_status()

    def webhooks(faults: list) -> None:
        requests.post(f"{SIM}/_sim/config", json={"webhook_faults": faults}, timeout=10).raise_for_status()

    frac = SECONDS / 60
    at(
        5 * frac,
        "webhook deliveries duplicated (every event)",
        lambda: webhooks([{"type": "*", "action": "duplicate"}]),
    )
    at(
        10 * frac,
        "Stripe answers 500 to 30% of API calls",
        lambda: fault({"path": "/v1/*", "status": 500, "rate": 0.3, "seed": 19}),
    )
    at(
        20 * frac,
        "Stripe 500s off; 1.5 s latency on subscriptions",
        lambda: (
            requests.delete(f"{SIM}/_sim/faults", timeout=10),
            fault({"path": "/v1/subscription*", "kind": "latency", "latency_ms": 1500, "count": 20}),
        ),
    )
    at(25 * frac, "worker 1 killed (SIGKILL)", workers[0].kill)
    at(
        30 * frac,
        "webhook deliveries delayed 8 s",
        lambda: webhooks([{"type": "*", "action": "delay", "seconds": 8}]),
    )
    at(35 * frac, "worker 1 started again", workers[0].start)
    at(45 * frac, "faults off; delayed deliveries released",
       lambda: (requests.delete(f"{SIM}/_sim/faults", timeout=10), webhooks([]),
                requests.post(f"{SIM}/_sim/deliveries/release", timeout=10)))  # fmt: skip


# --- after the run --------------------------------------------------------------------------


def _drain(timeout: float = 120) -> None:
    """Until the queue, the outbox and the simulator's deliveries are all done."""
    broker = redis.Redis.from_url(os.environ["REDIS_URL"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        requests.post(f"{SIM}/_sim/deliveries/release", timeout=10)
        deliveries = requests.get(f"{SIM}/_sim/deliveries", timeout=10).json()
        waiting = [d for d in deliveries if d["status"] in ("pending", "held")]
        if not broker.llen("celery") and not QueuedTask.objects.exists() and not waiting:
            return
        time.sleep(1)
    print("  (drain timed out: queue, outbox or deliveries still busy)")


def _check(data: dict, stats: Stats) -> list[str]:
    orgs = data["orgs"]
    problems = [f"credits: {b}" for b in credit_invariants_check(organizations=orgs)]
    problems += [f"billing: {b}" for b in billing_invariants_check(organizations=orgs)]
    ours = {o.pk for o in orgs}
    drifts = [d for d in subscription_reconcile() + payments_reconcile() if d.organization.pk in ours]
    problems += [
        f"stripe: {d.organization.slug} {d.field} {d.local!r} here, {d.remote!r} there" for d in drifts
    ]
    consumed = list(
        CreditTransaction.objects.filter(
            account__organization__in=orgs, type=TransactionType.CONSUMPTION, reservation__isnull=True
        ).values_list("idempotency_key", flat=True)
    )
    if len(consumed) != len(set(consumed)) or set(consumed) != stats.consumed:
        problems.append(
            f"ledger: {len(stats.consumed)} consumes sent, {len(set(consumed))} in the ledger "
            f"({len(consumed) - len(set(consumed))} doubled, {len(stats.consumed - set(consumed))} lost)"
        )
    confirmed = CreditTransaction.objects.filter(
        account__organization__in=orgs,
        type=TransactionType.CONSUMPTION,
        reservation__code__in=stats.confirmed,
    ).count()
    if confirmed != len(stats.confirmed):
        problems.append(f"ledger: {len(stats.confirmed)} reservations confirmed, {confirmed} spent")
    api_calls = (
        UsageEvent.objects.filter(organization__in=orgs, meter__key="api_calls").aggregate(n=Sum("value"))[
            "n"
        ]
        or 0
    )
    if api_calls != len(stats.metered):
        problems.append(f"metering: {len(stats.metered)} metered calls succeeded, {api_calls} counted")
    return problems


def _p99(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100)[98]


def main() -> int:
    LOGS.mkdir(parents=True, exist_ok=True)
    print(f"run {RUN}: {ORGS:,} organizations, {SECONDS} s of load, logs in {LOGS.relative_to(ROOT)}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    procs = [Proc("stripe_sim", [sys.executable, "-m", "stripe_sim", "--port", str(SIM_PORT)])]
    try:
        _wait_http(f"{SIM}/_sim/config")
        reset()
        call_command("catalog_sync", verbosity=0)
        call_command("stripe_setup", site_url=WEB[0], verbosity=0)
        subprocess.run([sys.executable, "manage.py", "collectstatic", "--no-input", "-v0"], cwd=ROOT,
                       env=_env(), check=True)  # fmt: skip
        t = time.monotonic()
        data = prepare()
        print(f"set-up: {time.monotonic() - t:.0f} s")
        for n, port in enumerate(WEB_PORTS):
            server = [_bin("gunicorn"), "config.wsgi", "-b", f"127.0.0.1:{port}", "-k", "gthread", "-w", "2"]
            procs.append(Proc(f"web{n}", [*server, "--threads", "4", "--log-level", "warning"]))
        workers = [_worker(1), _worker(2)]
        procs += [*workers, Proc("beat", [_bin("celery"), "-A", "config", "beat", "--loglevel", "WARNING",
                                          "-s", str(LOGS / "beat-schedule")])]  # fmt: skip
        for base in WEB:
            _wait_http(base + "/healthz")
        stats, faults = Stats(), []
        t0 = time.monotonic()
        until = t0 + SECONDS
        threads = [
            threading.Thread(target=_client_loop, args=(stats, data["secrets"], until))
            for _ in range(CLIENTS)
        ]
        threads.append(threading.Thread(target=_buyers_loop, args=(stats, data["buyers"], until)))
        threads.append(threading.Thread(target=_fault_schedule, args=(workers, t0, faults), daemon=True))
        for thread in threads:
            thread.start()
        for thread in threads[:-1]:
            thread.join()
        elapsed = time.monotonic() - t0
        load_after = os.getloadavg()
        for _, secret, key in stats.retry:  # as a client does: the same key again
            _call(stats, "consume retry", "POST", "/api/v1/credits/consume", secret, {"amount": 1}, key)
        _drain()
        # Some work is deliberately late (a seat change's sync waits out its debounce, a task
        # retries Stripe with backoff): the invariants are checked until they hold or SETTLE
        # seconds have passed, and the time it took is reported.
        settle_start = time.monotonic()
        while True:
            api_calls_flush()
            problems = _check(data, stats)
            settled = time.monotonic() - settle_start
            if not problems or settled > SETTLE:
                break
            time.sleep(5)
        deliveries = requests.get(f"{SIM}/_sim/deliveries", timeout=10).json()
        by_event = defaultdict(int)
        for delivery in deliveries:
            by_event[delivery["event"]] += 1
        webhooks = (
            f"{len(deliveries):,} webhook deliveries of {len(by_event):,} events "
            f"({sum(1 for n in by_event.values() if n > 1)} delivered more than once), "
            f"{sum(1 for d in deliveries if d['status'] == 'succeeded'):,} answered 2xx"
        )
    finally:
        for proc in reversed(procs):
            proc.stop()
    total = sum(sum(s.values()) for s in stats.status.values())
    print(f"\nload: {elapsed:.0f} s, {total:,} requests and actions, {total / elapsed:,.1f}/s; "
          f"load average after: {' '.join(f'{x:.2f}' for x in load_after)}")  # fmt: skip
    print(
        f"{'operation':<16} {'count':>7} {'/s':>7} {'2xx':>7} {'4xx':>5} {'5xx':>5} {'lost':>5} "
        f"{'p50 ms':>8} {'p99 ms':>8}"
    )
    for op in sorted(stats.status):
        s, lat = stats.status[op], stats.latency[op]
        n = sum(s.values())
        ok = sum(v for k, v in s.items() if 200 <= k < 400)
        c4 = sum(v for k, v in s.items() if 400 <= k < 500)
        c5 = sum(v for k, v in s.items() if k >= 500)
        print(f"{op:<16} {n:>7,} {n / elapsed:>7.1f} {ok:>7,} {c4:>5} {c5:>5} {s.get(0, 0):>5} "
              f"{statistics.median(lat) * 1000:>8.1f} {_p99(lat) * 1000:>8.1f}")  # fmt: skip
    print(webhooks)
    print("\nfaults:")
    for line in faults:
        print("  " + line)
    print(
        f"\ninvariants ({len(data['orgs']):,} organizations, {len(stats.consumed):,} consumes, "
        f"{len(stats.confirmed):,} confirmed reservations, {len(stats.metered):,} metered calls):"
    )
    print(f"  checked until they held: {settled:.0f} s after the load and the drain")
    for line in problems or [
        "every invariant holds (I1-I5, ledger, no lost or doubled money, API calls counted)"
    ]:
        print("  " + line)
    return 1 if problems else 0


sys.exit(main())
