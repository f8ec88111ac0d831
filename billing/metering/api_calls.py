"""API calls counted in Redis and written to the usage log in batches, exactly once.

Every call of the metered API (`billing.entitlements.gating.MetersApiCalls`) is one unit of `api_calls`.
Writing an event per call made the database the price of every request; instead a call is
counted by one Lua script in Redis, which also refuses it past the quota (what the database has
counted, plus what waits in Redis, against the plan's allowance), and ignores a retry that
repeats its Idempotency-Key within `SEEN_TTL`. `api_calls_flush` (a task every `FLUSH_EVERY`
seconds, or `manage.py api_calls_flush`) turns each organization's count into usage events.

Exactly once: the flush first moves an organization's count into a batch with its own id (one
script: the count and the move are atomic), then ingests one event per call with ids derived from
the batch's id, then deletes the batch. A flush that dies anywhere in between leaves the batch,
and the next flush ingests it again: the ids are the same, so the events already stored are
duplicates and nothing is counted twice; calls made meanwhile wait in a new count. The quota
check counts an unfinished batch as used (for the moment between its commit and its deletion,
twice: the check errs on the side of the quota, never past it).

Without Redis (or when it does not answer) a call is recorded in the database at once, as before.
"""

import uuid
from datetime import datetime

import redis
from django.conf import settings
from django.utils import timezone

from billing import entitlements
from billing.entitlements.decisions import Decision
from billing.metering import ingest as usage
from billing.models import Overage
from teams.models import Organization

API_CALLS = usage.API_CALLS
PREFIX = "tally:apicalls:"
ORGS_KEY = PREFIX + "orgs"
SEEN_TTL = 24 * 3600  # seconds a repeated Idempotency-Key is recognised
FLUSH_EVERY = 10.0  # seconds (the beat schedule in config/settings.py)
REDIS_TIMEOUT = 0.25

# KEYS: pending count, unfinished batch, organizations set, seen key (or "").
# ARGV: allowance (-1: unlimited), organization id, seconds a seen key lives.
# Returns {outcome, counted}: 1 counted, 0 a repeat, -1 refused; counted = pending + batch.
_RECORD = """
if KEYS[4] ~= '' then
  if not redis.call('SET', KEYS[4], '1', 'NX', 'EX', tonumber(ARGV[3])) then
    return {0, 0}
  end
end
local waiting = tonumber(redis.call('GET', KEYS[1]) or '0')
waiting = waiting + tonumber(redis.call('HGET', KEYS[2], 'n') or '0')
local allowance = tonumber(ARGV[1])
if allowance >= 0 and waiting + 1 > allowance then
  if KEYS[4] ~= '' then redis.call('DEL', KEYS[4]) end
  return {-1, waiting}
end
redis.call('INCR', KEYS[1])
redis.call('SADD', KEYS[3], ARGV[2])
return {1, waiting + 1}
"""

# KEYS: pending count, unfinished batch, organizations set. ARGV: organization id, new batch id.
# Returns {n, batch id} of the batch to ingest (an unfinished one first), or {0, ''}.
_TAKE = """
local n = redis.call('HGET', KEYS[2], 'n')
if n then return {tonumber(n), redis.call('HGET', KEYS[2], 'id')} end
n = tonumber(redis.call('GETDEL', KEYS[1]) or '0')
if n == 0 then
  redis.call('SREM', KEYS[3], ARGV[1])
  return {0, ''}
end
redis.call('HSET', KEYS[2], 'n', n, 'id', ARGV[2])
return {n, ARGV[2]}
"""

_clients: dict[str, redis.Redis] = {}


def _client() -> redis.Redis | None:
    url = settings.REDIS_URL
    if not url:
        return None
    if url not in _clients:
        _clients[url] = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
        )
    return _clients[url]


def _keys(org_id: int) -> list[str]:
    return [f"{PREFIX}pending:{org_id}", f"{PREFIX}batch:{org_id}", ORGS_KEY]


def api_call_count(
    *, organization: Organization, event_id: str | None, now: datetime | None = None
) -> Decision:
    """Count one API call (`event_id` names a retried request, None when it has no key); the
    decision refuses it past the quota unless the plan bills overage."""
    now = now or timezone.now()
    client = _client()
    if client is None:
        return usage.api_call_record(organization=organization, event_id=event_id or _fresh_id(), now=now)
    state = entitlements.check(organization, API_CALLS, 0, now=now)
    if state.reason == entitlements.Reason.UNKNOWN_FEATURE:
        return usage.api_call_record(organization=organization, event_id=event_id or _fresh_id(), now=now)
    unlimited = state.unlimited or state.overage == Overage.BILL
    allowance = -1 if unlimited else max(0, (state.limit or 0) - state.used)
    seen = f"{PREFIX}seen:{organization.pk}:{event_id}" if event_id else ""
    try:
        outcome, waiting = client.eval(
            _RECORD, 4, *_keys(organization.pk), seen, allowance, organization.pk, SEEN_TTL
        )
    except redis.RedisError:
        return usage.api_call_record(organization=organization, event_id=event_id or _fresh_id(), now=now)
    if outcome >= 0:
        return entitlements.check(organization, API_CALLS, 0, now=now) if outcome == 0 else state
    # Refused: the decision says so with what is counted, waiting calls included.
    return entitlements.check(organization, API_CALLS, int(waiting) + 1, now=now)


def _fresh_id() -> str:
    return f"api:{uuid.uuid4().hex}"


def api_calls_flush(*, now: datetime | None = None) -> int:
    """Write every organization's counted calls as usage events; returns how many were written
    (events already written by an earlier, interrupted flush are not counted again)."""
    client = _client()
    if client is None:
        return 0
    written = 0
    for raw_id in client.smembers(ORGS_KEY):
        org_id = int(raw_id)
        organization = Organization.objects.filter(pk=org_id).first()
        if organization is None:
            client.delete(*_keys(org_id)[:2])
            client.srem(ORGS_KEY, org_id)
            continue
        while True:
            n, batch_id = client.eval(_TAKE, 3, *_keys(org_id), org_id, uuid.uuid4().hex)
            if not n:
                break
            written += _ingest(
                organization, int(n), batch_id.decode() if isinstance(batch_id, bytes) else batch_id, now
            )
            client.delete(_keys(org_id)[1])
    return written


def _ingest(organization: Organization, n: int, batch_id: str, now: datetime | None) -> int:
    meter = next((m for m in usage.meters_by_key().values() if m.feature == API_CALLS), None)
    if meter is None:
        for i in range(n):
            entitlements.consume(organization, API_CALLS, 1, idempotency_key=f"api-calls:{batch_id}:{i}")
        return n
    at = (now or timezone.now()).isoformat()
    accepted = 0
    for start in range(0, n, usage.MAX_BATCH):
        events = [
            {"id": f"api-calls:{batch_id}:{i}", "meter": meter.key, "value": 1, "timestamp": at}
            for i in range(start, min(n, start + usage.MAX_BATCH))
        ]
        accepted += usage.usage_ingest(organization=organization, events=events, now=now).accepted
    return accepted
