"""Tally's one rate limiter: a sliding-window log per bucket in Redis, shared by every process.

A request is let through only if every bucket it falls in (its organization, its API key or
person, an address, an account) has room in the last `window` seconds; then it is recorded in all
of them. Checking and recording are one Lua script, so concurrent requests never overshoot and a
refused request uses up nothing. Unlike a fixed window, a client cannot fit twice its rate into
the seconds around a window's edge.

The API's buckets are in `billing/ratelimit.py` (they follow the plan); sign-in, sign-up and
password reset use it here (`teams/throttle.py`). When Redis does not answer,
`RATE_LIMIT_FAIL_OPEN` decides: let requests through (the default: rate limits protect capacity,
not money) or refuse them.
"""

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import redis
from django.conf import settings
from django.utils import timezone

from teams import metrics

WINDOW = 60
PREFIX = "tally:rl:"

# KEYS: the buckets. ARGV: now (ms), a unique member, record (0/1), then limit and window (ms)
# for each bucket. Returns {allowed, then for each bucket: count, ms until a slot frees}.
_SCRIPT = """
local now = tonumber(ARGV[1])
local member = ARGV[2]
local record = ARGV[3] == '1'
local allowed = 1
local out = {}
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 + 2 * i])
  local window = tonumber(ARGV[3 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local count = redis.call('ZCARD', key)
  local wait = 0
  if count >= limit then
    allowed = 0
    -- The entry whose expiry frees the first slot.
    local entry = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
    if entry[2] then wait = tonumber(entry[2]) + window - now end
  elseif count > 0 then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    wait = tonumber(oldest[2]) + window - now
  end
  out[2 * i - 1] = count
  out[2 * i] = wait
end
if allowed == 1 and record then
  for i, key in ipairs(KEYS) do
    redis.call('ZADD', key, now, member)
    redis.call('PEXPIRE', key, tonumber(ARGV[3 + 2 * i]))
  end
end
table.insert(out, 1, allowed)
return out
"""


@dataclass(frozen=True)
class Bucket:
    name: str  # e.g. "org:12", "key:7", "login-ip:203.0.113.9"
    limit: int
    window: int = WINDOW  # seconds


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int | None  # of the bucket that binds; None when nothing limits the request
    remaining: int | None
    reset: int  # seconds until the binding bucket has (more) room
    unavailable: bool = False  # Redis did not answer; `allowed` follows RATE_LIMIT_FAIL_OPEN
    bucket: str = ""  # the name of the bucket that binds

    @property
    def retry_after(self) -> int:
        return self.reset

    @property
    def limited(self) -> bool:
        return self.limit is not None

    def headers(self) -> dict[str, str]:
        """The IETF `RateLimit-*` fields (and `Retry-After` when refused)."""
        if self.unavailable:
            return {} if self.allowed else {"Retry-After": str(self.reset)}
        if self.limit is None:
            return {}
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset)
        return headers


UNLIMITED = RateDecision(True, None, None, 0)

_clients: dict[str, redis.Redis] = {}


def _client() -> redis.Redis | None:
    url = settings.RATE_LIMIT_REDIS_URL
    if not url:
        return None
    if url not in _clients:
        timeout = settings.RATE_LIMIT_REDIS_TIMEOUT
        _clients[url] = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    return _clients[url]


def _seconds(ms: int) -> int:
    return max(1, math.ceil(ms / 1000))


def limiter_hit(
    buckets: Sequence[Bucket], *, now: datetime | None = None, record: bool = True
) -> RateDecision:
    """Let one request through every bucket, or refuse it; `record=False` only looks."""
    if not buckets:
        return UNLIMITED
    now_ms = int((now or timezone.now()).timestamp() * 1000)
    client = _client()
    args: list = [now_ms, f"{now_ms}-{secrets.token_hex(6)}", int(record)]
    for bucket in buckets:
        args += [bucket.limit, bucket.window * 1000]
    try:
        if client is None:
            raise redis.ConnectionError("RATE_LIMIT_REDIS_URL is not set")
        reply = client.eval(_SCRIPT, len(buckets), *[PREFIX + b.name for b in buckets], *args)
    except redis.RedisError:
        metrics.inc(
            "tally_rate_limit_unavailable_total",
            outcome="open" if settings.RATE_LIMIT_FAIL_OPEN else "closed",
        )
        tightest = min(buckets, key=lambda b: b.limit)
        return RateDecision(
            settings.RATE_LIMIT_FAIL_OPEN, tightest.limit, 0, 1, unavailable=True, bucket=tightest.name
        )
    allowed = bool(reply[0])
    states = []
    for i, bucket in enumerate(buckets):
        count, wait_ms = int(reply[1 + 2 * i]), int(reply[2 + 2 * i])
        after = count + 1 if (allowed and record) else count
        states.append((bucket, max(0, bucket.limit - after), wait_ms or bucket.window * 1000))
    if not allowed:
        metrics.inc("tally_rate_limit_refusals_total")
    if allowed:
        # Report the bucket with the least room left.
        bucket, remaining, wait_ms = min(states, key=lambda s: (s[1], s[0].limit))
    else:
        # The refused bucket that frees last decides when a retry can pass.
        bucket, remaining, wait_ms = max((s for s in states if s[1] == 0), key=lambda s: s[2])
    return RateDecision(allowed, bucket.limit, remaining, _seconds(wait_ms), bucket=bucket.name)


def limiter_count(bucket: Bucket, *, now: datetime | None = None) -> int:
    """Requests recorded in `bucket` within its window (0 when Redis is away)."""
    now_ms = int((now or timezone.now()).timestamp() * 1000)
    client = _client()
    if client is None:
        return 0
    try:
        return int(client.zcount(PREFIX + bucket.name, now_ms - bucket.window * 1000 + 1, "+inf"))
    except redis.RedisError:
        return 0
