"""Django's Redis cache backend, with one Redis client per process instead of one per call.

Django's `RedisCacheClient.get_client` builds a new `redis.Redis` around the connection pool on
every operation (each `get`, each `get_many`), which costs more than the round trip on the hot
API paths. The pool is already per process; so is the client now. Everything else (pickling,
key prefixes, timeouts) is Django's.
"""

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient as DjangoRedisCacheClient


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
