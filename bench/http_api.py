"""The hot API paths over HTTP, under gunicorn, against a raw WSGI app on the same server config.

Both servers run at once on loopback (ports from BENCH_HTTP_PORT, default 25100): Tally
(`config.wsgi`, DJANGO_DEBUG=false, Redis cache, PostgreSQL) and `bench/_raw_wsgi.py`, which
authenticates the key with one Redis GET and does only the SQL or Redis work of the endpoint.
wrk drives them with keep-alive connections (every request has its own Idempotency-Key and, for
1,000 organizations, a random organization's key); rounds alternate raw / Tally and each row
reports the median of the per-pair ratios, so load from elsewhere on the machine weighs on both
sides. Each server configuration of the issue is measured: 2 workers x 4 threads (gthread) and
4 sync workers. Every budget line ends in "met" or "not met".

Not named `http.py`: a script's folder comes first on `sys.path`, and it would shadow the
standard library's `http` package for everything the bench imports.
"""

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/13")
os.environ.setdefault("DJANGO_DEBUG", "false")

from _setup import ROOT, setup_django

setup_django()

import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

from billing import entitlements  # noqa: E402
from billing.catalog import catalog_apply, load_catalog  # noqa: E402
from billing.models import Meter, Plan  # noqa: E402
from credits import services as credit_services  # noqa: E402
from credits.models import CreditAccount  # noqa: E402
from teams import api_keys  # noqa: E402
from teams.models import ApiKey, Organization, User  # noqa: E402

ORGS = 1000
SECONDS = int(os.environ.get("BENCH_HTTP_SECONDS", "3"))
ROUNDS = int(os.environ.get("BENCH_HTTP_ROUNDS", "3"))
PORT = int(os.environ.get("BENCH_HTTP_PORT", "25100"))
CONFIGS = {
    "gthread": ("2 workers x 4 threads", ["-k", "gthread", "-w", "2", "--threads", "4"]),
    "sync": ("4 sync workers", ["-k", "sync", "-w", "4"]),
}
# BENCH_HTTP_CONFIGS=gthread (or sync) measures one configuration only.
_only = os.environ.get("BENCH_HTTP_CONFIGS", "")
CONFIGS = dict(v for k, v in CONFIGS.items() if not _only or k in _only.split(","))
WRK = shutil.which("wrk")


def prepare() -> dict:
    """Organizations on an unlimited plan (the endpoint is measured, not the rate limit), each
    with credits and an API key; the raw app's Redis gets each key's digest -> account."""
    catalog_apply(load_catalog())
    settings.CREDITS_WELCOME_BONUS = 0
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE credits_creditallocation, credits_credittransaction, credits_creditreservation, "
            "credits_creditrecharge, credits_creditgrant, credits_creditaccount CASCADE"
        )
        cursor.execute("TRUNCATE billing_usageevent")
    user, _ = User.objects.get_or_create(email="bench-http@example.com")
    have = list(Organization.objects.filter(slug__startswith="bench-http-").order_by("pk"))
    for i in range(len(have), ORGS):
        have.append(Organization.objects.create(name=f"bench http {i}", slug=f"bench-http-{i}"))
    enterprise = Plan.objects.get(key="enterprise")
    ApiKey.objects.filter(organization__in=have).delete()
    meter = Meter.objects.get(key="api_calls")
    raw = redis.Redis.from_url(os.environ["REDIS_URL"])
    raw.flushdb()
    secrets = []
    for org in have:
        entitlements.subscription_set(organization=org, plan=enterprise, status="active")
        entitlements.invalidate(org)
        credit_services.credits_grant(
            organization=org, amount=10**12, source="purchase", idempotency_key="bench"
        )
        _, secret = api_keys.api_key_create(organization=org, actor=user, name="bench")
        secrets.append(secret)
    accounts = dict(CreditAccount.objects.values_list("organization_id", "pk"))
    period_start = entitlements.effective_for(have[0]).period(datetime.now(UTC)).start.isoformat()
    pipe = raw.pipeline()
    for org, secret in zip(have, secrets, strict=True):
        who = {"org": org.pk, "account": accounts[org.pk], "meter": meter.pk, "period_start": period_start}
        pipe.set("bench:raw:key:" + ApiKey.digest_of(secret), json.dumps(who))
        pipe.set(f"bench:raw:ent:{org.pk}:priority_support", "1")
    pipe.execute()
    return {"secrets": secrets}


def server_env() -> dict:
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=env.get("DJANGO_SECRET_KEY", "bench-only-secret-key-0123456789-abcdefghijkl"),
        ALLOWED_HOSTS="127.0.0.1",
        LOG_LEVEL="ERROR",
        RAW_DSN=f"host={db['HOST']} port={db['PORT']} user={db['USER']} dbname={db['NAME']}",
        PYTHONPATH=str(ROOT),
    )
    return env


def start(app: str, port: int, options: list[str], chdir: Path) -> subprocess.Popen:
    gunicorn = Path(sys.executable).with_name("gunicorn")
    command = [str(gunicorn), app, "-b", f"127.0.0.1:{port}", "--chdir", str(chdir), "--log-level", "warning"]
    return subprocess.Popen([*command, *options], env=server_env(), start_new_session=True)


def wait_up(port: int) -> None:
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/credits/balance", timeout=1)
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
            continue
        return
    raise RuntimeError(f"no server on port {port}")


def warm(port: int, secrets: list[str]) -> None:
    """One check per key, so every key and organization is in the shared caches, as they are
    for the active organizations of a running server; the per-process caches fill during the
    warm-up round of each row."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port)
    for secret in secrets:
        body = json.dumps({"feature": "priority_support"})
        headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
        conn.request("POST", "/api/v1/entitlements/check", body, headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"warm-up: {response.status}")
    conn.close()


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


LUA = r"""
local keys = {%(keys)s}
local path = "%(path)s"
local kind = "%(kind)s"
local batch = %(batch)d
local run = "%(run)s"
local counter = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  math.randomseed(tid * 7919 + os.time())
end
function request()
  counter = counter + 1
  local idem = run .. "-" .. tid .. "-" .. counter
  local key = keys[math.random(#keys)]
  local body
  if kind == "consume" then
    body = '{"amount": 1}'
  elseif kind == "check" then
    body = '{"feature": "priority_support", "requested": 1}'
  else
    local parts = {}
    for i = 1, batch do
      parts[i] = '{"id": "' .. idem .. '-' .. i .. '", "meter": "api_calls", "value": 1}'
    end
    body = '{"events": [' .. table.concat(parts, ",") .. ']}'
  end
  local headers = {}
  headers["Authorization"] = "Bearer " .. key
  headers["Content-Type"] = "application/json"
  headers["Idempotency-Key"] = idem
  return wrk.format("POST", path, headers, body)
end
function done(summary, latency, requests)
  io.write(string.format('RESULT {"requests": %%d, "seconds": %%f, "non2xx": %%d, "socket": %%d, ' ..
    '"p50": %%d, "p99": %%d}\n', summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def drive(port: int, path: str, kind: str, secrets: list[str], clients: int, batch: int = 1) -> dict:
    script = LUA % {
        "keys": ",".join(f'"{s}"' for s in secrets),
        "path": path,
        "kind": kind,
        "batch": batch,
        "run": uuid.uuid4().hex[:10],
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as f:
        f.write(script)
        f.flush()
        threads = min(clients, 2)
        command = [WRK, f"-t{threads}", f"-c{clients}", f"-d{SECONDS}s", "--timeout", "10s", "-s", f.name]
        out = subprocess.run([*command, f"http://127.0.0.1:{port}"], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"wrk failed: {out.stdout} {out.stderr}")
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    if result["non2xx"] or result["socket"]:
        raise RuntimeError(f"{path} on {port}: {result}")
    result["rate"] = result["requests"] * batch / result["seconds"]
    return result


def compare(raw_port, tally_port, raw_path, tally_path, kind, secrets, clients, batch=1) -> dict:
    for _ in range(2 if len(secrets) > 1 else 1):  # warm both (each worker's own cache too)
        drive(raw_port, raw_path, kind, secrets, clients, batch)
        drive(tally_port, tally_path, kind, secrets, clients, batch)
    pairs = []
    for _ in range(ROUNDS):
        pairs.append(
            (
                drive(raw_port, raw_path, kind, secrets, clients, batch),
                drive(tally_port, tally_path, kind, secrets, clients, batch),
            )
        )
    return {
        "raw": statistics.median(r["rate"] for r, _ in pairs),
        "tally": statistics.median(t["rate"] for _, t in pairs),
        "ratio": statistics.median(t["rate"] / r["rate"] for r, t in pairs),
        "raw_p50": statistics.median(r["p50"] for r, _ in pairs) / 1000,
        "tally_p50": statistics.median(t["p50"] for _, t in pairs) / 1000,
        "raw_p99": statistics.median(r["p99"] for r, _ in pairs) / 1000,
        "tally_p99": statistics.median(t["p99"] for _, t in pairs) / 1000,
    }


def verdict(ok: bool) -> str:
    return "met" if ok else "not met"


def main() -> None:
    if WRK is None:
        print("wrk is not installed (apt-get install wrk): the HTTP benchmark needs it; skipped.")
        return
    data = prepare()
    secrets = data["secrets"]
    one = secrets[:1]
    budgets: list[str] = []
    print(
        f"load average before: {os.getloadavg()[0]:.2f}; {SECONDS:g} s per round, {ROUNDS} alternating rounds"
    )
    for n, (name, options) in enumerate(CONFIGS.items()):
        raw_port, tally_port = PORT + 2 * n, PORT + 2 * n + 1
        raw = start("_raw_wsgi:application", raw_port, options, ROOT / "bench")
        tally = start("config.wsgi:application", tally_port, options, ROOT)
        try:
            wait_up(raw_port)
            wait_up(tally_port)
            warm(tally_port, secrets)
            print(f"\n== gunicorn, {name}")
            print(
                f"{'path':<44} {'raw/s':>9} {'Tally/s':>9} {'ratio':>6} "
                f"{'p50 raw/Tally ms':>17} {'p99 Tally':>9}"
            )

            def row(label, result):
                print(
                    f"{label:<44} {result['raw']:>9,.0f} {result['tally']:>9,.0f} {result['ratio']:>5.2f}x "
                    f"{result['raw_p50']:>7.2f} /{result['tally_p50']:>7.2f} {result['tally_p99']:>8.2f}"
                )

            for orgs, keys in (("1 org", one), (f"{ORGS:,} orgs", secrets)):
                for clients in (1, 4, 16):
                    r = compare(
                        raw_port, tally_port, "/consume", "/api/v1/credits/consume", "consume", keys, clients
                    )
                    row(f"consume, {orgs}, {clients} clients", r)
                    budgets.append(
                        f"[{name}] consume {orgs} {clients} clients >= 0.6x raw: "
                        f"{r['ratio']:.2f}x {verdict(r['ratio'] >= 0.6)}"
                    )
                    if clients == 1:
                        budgets.append(
                            f"[{name}] consume {orgs} p50 at 1 client <= 2x raw's: {r['tally_p50']:.2f} vs "
                            f"{r['raw_p50']:.2f} ms {verdict(r['tally_p50'] <= 2 * r['raw_p50'])}"
                        )
            for clients in (1, 4, 16):
                r = compare(
                    raw_port, tally_port, "/check", "/api/v1/entitlements/check", "check", one, clients
                )
                row(f"entitlements/check, {clients} clients", r)
                budgets.append(
                    f"[{name}] check {clients} clients >= 0.4x raw: {r['ratio']:.2f}x "
                    f"{verdict(r['ratio'] >= 0.4)}"
                )
                if clients == 1:
                    budgets.append(
                        f"[{name}] check p50 at 1 client <= 1.5 ms: {r['tally_p50']:.2f} ms "
                        f"{verdict(r['tally_p50'] <= 1.5)}"
                    )
            for batch in (1, 100, 1000):
                r = compare(raw_port, tally_port, "/events", "/api/v1/usage/events", "events", one, 4, batch)
                row(f"usage/events (events/s), batch {batch:,}, 4 clients", r)
                need = {1: 0.4, 1000: 0.9}.get(batch)
                if need:
                    budgets.append(
                        f"[{name}] usage events batch {batch:,} >= {need}x raw: {r['ratio']:.2f}x "
                        f"{verdict(r['ratio'] >= need)}"
                    )
        finally:
            stop(raw)
            stop(tally)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    print("\nbudgets:")
    for line in budgets:
        print("  " + line)


main()
