"""The Redis cache backend Tally uses: a cache that is away is a cache that misses.

Everything Tally caches can be recomputed from PostgreSQL, so a cache error must never become an
error for the person: reads answer "not cached", writes are dropped, and each failure is logged
and counted (`tally_cache_errors_total`). After a failure the cache is left alone for
`CACHE_RETRY_SECONDS` (the calls in between are counted as skipped), so a Redis that is gone
costs one timed-out connection per process and interval, not one per call.

`add` answers True while the cache is away: callers use it to avoid duplicate work (one seat
sync scheduled, one lock holder), and the work they guard is idempotent, so doing it twice is
the safe failure. When the cache answers again, the hooks registered with `on_recover` run once:
a write dropped during the outage (an invalidation) must not leave a stale entry served.

One Redis client per process: Django's `RedisCacheClient.get_client` builds a new `redis.Redis`
around the connection pool on every operation (each `get`, each `get_many`), which costs more
than the round trip on the hot API paths. Everything else (pickling, key prefixes, timeouts) is
Django's.
"""

import logging
import threading
import time
from collections.abc import Callable

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient as DjangoRedisCacheClient

from teams import metrics


class RedisCacheClient(DjangoRedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}

    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = self._client(connection_pool=self._get_connection_pool(write))
        return client


class RedisCache(DjangoRedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = RedisCacheClient

    def raw_client(self):
        """The backend's `redis.Redis`, for the few callers that pipeline their own commands."""
        return self._cache.get_client(write=True)

    def decode(self, raw: bytes | None):
        """A value read from Redis directly (under `make_key`), as `get` would answer it."""
        return None if raw is None else self._cache._serializer.loads(raw)


log = logging.getLogger("tally.cache")

_recover_hooks: list[Callable[[], None]] = []


def on_recover(hook: Callable[[], None]) -> None:
    """Run `hook` the first time the cache answers after it was away (in the process that saw it away)."""
    if hook not in _recover_hooks:
        _recover_hooks.append(hook)


class ResilientRedisCache(RedisCache):
    """The backend in settings: one client per process, and a cache that is away misses."""

    def __init__(self, server, params):
        options = dict(params.get("OPTIONS") or {})
        self.retry_seconds = float(options.pop("RETRY_SECONDS", 5.0))
        timeout = float(options.pop("SOCKET_TIMEOUT", 0.25))
        # A Redis that does not answer must not hold a request for long.
        options.setdefault("socket_connect_timeout", timeout)
        options.setdefault("socket_timeout", timeout)
        super().__init__(server, {**params, "OPTIONS": options})
        self._state = threading.Lock()
        self._away_until = 0.0
        self._was_away = False

    def _call(self, operation: str, fallback, method, *args, **kwargs):
        if self._away_until and time.monotonic() < self._away_until:
            metrics.inc("tally_cache_skipped_total", operation=operation)
            return fallback
        try:
            result = method(*args, **kwargs)
        except self._lib.RedisError as exc:
            with self._state:
                self._away_until = time.monotonic() + self.retry_seconds
                self._was_away = True
            metrics.inc("tally_cache_errors_total", operation=operation)
            log.warning("cache %s failed, answering from the database: %r", operation, exc)
            return fallback
        if self._was_away:
            self._recovered()
        return result

    def _recovered(self) -> None:
        with self._state:
            if not self._was_away:
                return
            self._was_away = False
            self._away_until = 0.0
        log.warning("cache answers again")
        for hook in list(_recover_hooks):
            try:
                hook()
            except Exception:
                log.exception("cache recovery hook %r failed", hook)

    @property
    def _lib(self):
        return self._cache._lib

    # What each operation answers while the cache is away.

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._call("add", True, super().add, key, value, timeout, version)

    def get(self, key, default=None, version=None):
        return self._call("get", default, super().get, key, default, version)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self._call("set", None, super().set, key, value, timeout, version)

    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        return self._call("touch", False, super().touch, key, timeout, version)

    def delete(self, key, version=None):
        return self._call("delete", False, super().delete, key, version)

    def get_many(self, keys, version=None):
        return self._call("get_many", {}, super().get_many, keys, version)

    def has_key(self, key, version=None):
        return self._call("has_key", False, super().has_key, key, version)

    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        return self._call("set_many", list(data), super().set_many, data, timeout, version)

    def delete_many(self, keys, version=None):
        return self._call("delete_many", None, super().delete_many, keys, version)

    def clear(self):
        return self._call("clear", None, super().clear)
