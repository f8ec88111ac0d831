"""API-key authentication without a query per request.

Every server call authenticates a key, so the lookup digest -> (key, organization) is cached in
two layers: a small in-process LRU, and Redis, shared by every process. Both are only trusted
under the current *generation*, a counter in Redis that every change to a key or an organization
moves (after its commit), and every request reads that counter first, in the one round trip it
makes. So a revoked key is refused on the very next request, by every process, while a hit costs
one Redis GET and no query.

The generation is read before the database, and an entry is stored under the generation it was
read with: a change that commits while a request loads its entry leaves that entry stale, and the
next request, seeing the moved generation, loads again. A generation Redis lost (a restart
without persistence, an eviction) starts again from the clock in nanoseconds, above any value
it counted to before, so an entry cached under an older one never matches again.

`last_used_at` is written in bulk: each process notes a key's use in a Redis hash at most once
a minute, and `api_key_use_flush` (a periodic task) writes what the hash holds with one
statement, never moving a time backwards. Without Redis, both fall back to the database: one
query per request, and a conditional UPDATE at most once a minute per key and process.
"""

import contextlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime

import redis
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from teams.models import ApiKey, Organization

GENERATION_KEY = "tally:apikey:gen"
ENTRY_PREFIX = "tally:apikey:e:"
USED_KEY = "tally:apikey:used"
FLUSHING_KEY = "tally:apikey:used:flushing"

LOCAL_SIZE = 10_000
# The generation read by every request keeps entries fresh; these only bound how long a key no
# one uses stays in memory. Long enough that a key called every few minutes reads no database.
LOCAL_TTL = 600.0  # seconds
SHARED_TTL = 3600  # seconds, in Redis
USE_EVERY = ApiKey.LAST_USED_GRANULARITY.total_seconds()
REDIS_TIMEOUT = 0.25  # seconds: a missing Redis must not stall every request

_KEY_FIELD_OBJECTS = ApiKey._meta.concrete_fields
_ORG_FIELD_OBJECTS = Organization._meta.concrete_fields
_KEY_FIELDS = [f.attname for f in _KEY_FIELD_OBJECTS]
_ORG_FIELDS = [f.attname for f in _ORG_FIELD_OBJECTS]
_ORG_ID = _ORG_FIELDS.index("id")

_lock = threading.Lock()
_local: OrderedDict[str, tuple] = OrderedDict()  # digest -> (generation, expires, key row, org row)
_noted: dict[int, float] = {}  # key id -> when this process last noted its use (monotonic)
_clients: dict[str, redis.Redis] = {}


def _client() -> redis.Redis | None:
    url = settings.REDIS_URL
    if not url:
        return None
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
        )
    return client


def _load(digest: str) -> tuple[tuple, tuple] | None:
    key = (
        ApiKey.objects.active()
        .select_related("organization")
        .filter(digest=digest, organization__deleted_at__isnull=True)
        .first()
    )
    if key is None:
        return None
    org = key.organization
    return tuple(getattr(key, f) for f in _KEY_FIELDS), tuple(getattr(org, f) for f in _ORG_FIELDS)


def _encode(generation: bytes, rows: tuple[tuple, tuple]) -> str:
    return json.dumps([generation.decode(), *rows], cls=DjangoJSONEncoder)


def _decode(stored: bytes, generation: bytes) -> tuple[tuple, tuple] | None:
    """The rows stored under the current generation, or None."""
    entry_generation, key_row, org_row = json.loads(stored)
    if entry_generation.encode() != generation:
        return None
    key_row = tuple(f.to_python(v) for f, v in zip(_KEY_FIELD_OBJECTS, key_row, strict=True))
    org_row = tuple(f.to_python(v) for f, v in zip(_ORG_FIELD_OBJECTS, org_row, strict=True))
    return key_row, org_row


def _instances(rows: tuple[tuple, tuple]) -> ApiKey:
    # Fresh instances per request: callers may set attributes on them.
    key = ApiKey.from_db("default", _KEY_FIELDS, rows[0])
    key.organization = Organization.from_db("default", _ORG_FIELDS, rows[1])
    return key


def _due(key_id: int, now: float) -> bool:
    last = _noted.get(key_id)
    if last is not None and now - last < USE_EVERY:
        return False
    if len(_noted) > 4 * LOCAL_SIZE:
        _noted.clear()
    _noted[key_id] = now
    return True


def _used_before(moment: datetime) -> Q:
    return Q(last_used_at__isnull=True) | Q(last_used_at__lt=moment)


def _touch_in_database(key_id: int) -> None:
    now = timezone.now()
    stale = now - ApiKey.LAST_USED_GRANULARITY
    ApiKey.objects.filter(_used_before(stale), pk=key_id).update(last_used_at=now)


def authenticate(secret: str, *, prefetch: Callable[[int], list[str]] | None = None) -> ApiKey | None:
    """The active key with this secret, its organization attached; None when unknown/revoked.

    `prefetch(organization_id)` names Redis keys the caller will read next for the key's
    organization: when the key is known in-process, they are read in the same round trip and
    left on the organization (`_prefetched`), for a request that would otherwise make a second."""
    digest = ApiKey.digest_of(secret)
    client = _client()
    now = time.monotonic()
    with _lock:
        local = _local.get(digest)
    fresh_local = local is not None and local[1] > now
    extra = prefetch(local[3][_ORG_ID]) if fresh_local and prefetch is not None else []
    try:
        if client is None:
            raise redis.ConnectionError("REDIS_URL is not set")
        pipe = client.pipeline(transaction=False)
        pipe.get(GENERATION_KEY)
        if extra:
            pipe.mget(extra)
        if not fresh_local:
            pipe.get(ENTRY_PREFIX + digest)
        elif _due(local[2][0], now):
            pipe.hset(USED_KEY, local[2][0], int(time.time()))
        replies = pipe.execute()
        generation = replies[0] or _generation_start(client)
    except redis.RedisError:
        return _authenticate_uncached(digest)
    if fresh_local and local[0] == generation:
        with _lock:
            _local.move_to_end(digest)
        key = _instances((local[2], local[3]))
        if extra:
            key.organization.__dict__["_prefetched"] = dict(zip(extra, replies[1], strict=True))
        return key

    rows = None
    shared = None if fresh_local else replies[-1]
    if shared is not None:
        rows = _decode(shared, generation)
    if rows is None:
        rows = _load(digest)
        if rows is None:
            return None  # unknown keys are not cached: they would only fill the cache
        with contextlib.suppress(redis.RedisError):
            client.set(ENTRY_PREFIX + digest, _encode(generation, rows), ex=SHARED_TTL)
    with _lock:
        _local[digest] = (generation, now + LOCAL_TTL, rows[0], rows[1])
        _local.move_to_end(digest)
        while len(_local) > LOCAL_SIZE:
            _local.popitem(last=False)
    key_id = rows[0][0]
    if _due(key_id, now):
        try:
            client.hset(USED_KEY, key_id, int(time.time()))
        except redis.RedisError:
            _touch_in_database(key_id)
    return _instances(rows)


def _authenticate_uncached(digest: str) -> ApiKey | None:
    rows = _load(digest)
    if rows is None:
        return None
    if _due(rows[0][0], time.monotonic()):
        _touch_in_database(rows[0][0])
    return _instances(rows)


def invalidate() -> None:
    """Every cached key is stale: called on any change to a key or an organization. Moved at
    once and again after the commit: a request that loads the row between the two (still seeing
    it unchanged) caches it under a generation the second move retires."""
    _bump()
    transaction.on_commit(_bump)


def _generation_start(client: redis.Redis) -> bytes:
    """The generation when Redis has none (it restarted empty, or evicted the counter): a new one
    above every value it held before, so that no entry cached under an older one matches."""
    pipe = client.pipeline(transaction=False)
    pipe.set(GENERATION_KEY, time.time_ns(), nx=True)
    pipe.get(GENERATION_KEY)
    return pipe.execute()[1]


def _bump() -> None:
    with _lock:
        _local.clear()
    client = _client()
    if client is None:
        return
    # When Redis is away nothing is read from it, and its entries expire within SHARED_TTL.
    with contextlib.suppress(redis.RedisError):
        pipe = client.pipeline(transaction=False)
        pipe.set(GENERATION_KEY, time.time_ns(), nx=True)  # a counter Redis lost starts above
        pipe.incr(GENERATION_KEY)
        pipe.execute()


def use_flush() -> int:
    """Write the noted uses to `last_used_at`; returns how many keys were written. A flush that
    died half-way is finished by the next one (the hash it took is kept until written)."""
    client = _client()
    if client is None:
        return 0
    if not client.exists(FLUSHING_KEY):
        try:
            # NX: never over a hash another flush is still writing.
            client.renamenx(USED_KEY, FLUSHING_KEY)
        except redis.ResponseError:
            return 0  # nothing noted
    noted = client.hgetall(FLUSHING_KEY)
    ids = [int(k) for k in noted]
    times = [datetime.fromtimestamp(int(v), tz=UTC) for v in noted.values()]
    written = 0
    if ids:
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE teams_apikey AS k SET last_used_at = v.at "
                    "FROM unnest(%s::bigint[], %s::timestamptz[]) AS v(id, at) "
                    "WHERE k.id = v.id AND (k.last_used_at IS NULL OR k.last_used_at < v.at)",
                    [ids, times],
                )
                written = cursor.rowcount
        else:
            for key_id, at in zip(ids, times, strict=True):
                written += ApiKey.objects.filter(_used_before(at), pk=key_id).update(last_used_at=at)
    client.delete(FLUSHING_KEY)
    return written


def forget_local() -> None:
    """Drop this process's entries and notes (tests start each from nothing)."""
    with _lock:
        _local.clear()
    _noted.clear()
