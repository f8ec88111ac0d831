"""The raw baseline of `bench/http.py`: a minimal WSGI app doing only the SQL and Redis work an
endpoint cannot do without, served by the same gunicorn configuration as Tally.

Every endpoint authenticates the bearer key from Redis (one GET of its digest, set up by the
bench), then:
- POST /consume: BEGIN, the conditional UPDATE of the account, the ledger INSERT, COMMIT;
- POST /check: one Redis GET (what a cached entitlement check cannot avoid);
- POST /events: one multi-row INSERT of the batch into the events table, committed.
No validation, idempotency, grants, quotas or error contract: that is what the ratio weighs.
"""

import hashlib
import json
import os
import threading
import uuid
from datetime import UTC, datetime

import psycopg
import redis

DSN = os.environ["RAW_DSN"]
KEY_PREFIX = "bench:raw:key:"
redis_client = redis.Redis.from_url(os.environ["REDIS_URL"])
_local = threading.local()

UPDATE = (
    "UPDATE credits_creditaccount SET balance = balance - %s, lifetime_used = lifetime_used + %s "
    "WHERE id = %s AND balance - held - %s >= -overdraft_allowance RETURNING balance, organization_id"
)
INSERT = (
    "INSERT INTO credits_credittransaction (code, organization_id, account_id, type, amount, "
    "balance_after, action, quantity, description, reference_type, reference_id, idempotency_key, "
    "metadata, created_at) "
    "VALUES (%s, %s, %s, 'consumption', %s, %s, '', NULL, '', '', '', %s, '{}', now())"
)
EVENT_COLUMNS = (
    "organization_id, meter_id, event_id, value, timestamp, period_start, properties, dimension, "
    "received_at, source"
)


def _conn() -> psycopg.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = _local.conn = psycopg.connect(DSN)
    return conn


def _json(start_response, status: str, body: dict):
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def application(environ, start_response):
    header = environ.get("HTTP_AUTHORIZATION", "")
    secret = header[7:] if header.startswith("Bearer ") else ""
    cached = redis_client.get(KEY_PREFIX + hashlib.sha256(secret.encode()).hexdigest())
    if cached is None:
        return _json(start_response, "401 Unauthorized", {"code": "authentication_failed"})
    who = json.loads(cached)
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = json.loads(environ["wsgi.input"].read(length) or b"{}")
    path = environ["PATH_INFO"]
    if path == "/consume":
        amount = body.get("amount", 1)
        conn = _conn()
        row = conn.execute(UPDATE, [amount, amount, who["account"], amount]).fetchone()
        if row is None:
            conn.rollback()
            return _json(start_response, "402 Payment Required", {"code": "insufficient_credits"})
        key = environ.get("HTTP_IDEMPOTENCY_KEY", "")
        conn.execute(INSERT, [uuid.uuid4(), row[1], who["account"], -amount, row[0], key])
        conn.commit()
        return _json(start_response, "201 Created", {"amount": -amount, "balance_after": row[0]})
    if path == "/check":
        value = redis_client.get(f"bench:raw:ent:{who['org']}:{body.get('feature')}")
        return _json(start_response, "200 OK", {"feature": body.get("feature"), "allowed": value is not None})
    if path == "/events":
        events = body.get("events", [])
        now = datetime.now(UTC)
        params = []
        for e in events:
            params += [
                who["org"],
                who["meter"],
                e["id"],
                e.get("value", 1),
                now,
                who["period_start"],
                "{}",
                "",
                now,
            ]
        rows = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, 'ingest')"] * len(events))
        conn = _conn()
        conn.execute(f"INSERT INTO billing_usageevent ({EVENT_COLUMNS}) VALUES {rows}", params)
        conn.commit()
        return _json(start_response, "200 OK", {"accepted": len(events), "duplicates": 0, "rejected": 0})
    return _json(start_response, "404 Not Found", {"code": "not_found"})
