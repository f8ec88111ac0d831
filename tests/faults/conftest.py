import json
from urllib.parse import urlsplit

import pytest
import redis

from tests.faults.proxy import Proxy


def _target(settings):
    parts = urlsplit(settings.REDIS_URL)
    return parts.hostname, parts.port or 6379, parts.path.lstrip("/") or "0"


@pytest.fixture
def redis_proxy(settings):
    """Redis behind a forwarder the test takes down and brings back."""
    host, port, _ = _target(settings)
    proxy = Proxy(host, port)
    yield proxy
    proxy.close()


class Broker:
    """The real broker (Redis) reached through a proxy, with Celery publishing for real."""

    def __init__(self, proxy: Proxy, db: str, queue_redis: redis.Redis) -> None:
        self.proxy = proxy
        self.url = proxy.url("redis", f"/{db}")
        self.redis = queue_redis

    def queued(self) -> list[dict]:
        """The messages waiting in the default queue: task name and id of each."""
        out = []
        for raw in self.redis.lrange("celery", 0, -1):
            headers = json.loads(raw)["headers"]
            out.append({"task": headers["task"], "id": headers["id"]})
        return out


@pytest.fixture
def broker(settings, redis_proxy):
    from config.celery import app

    host, port, db = _target(settings)
    direct = redis.Redis(host=host, port=port, db=int(db))
    direct.delete("celery")
    conf = app.conf
    saved = conf.broker_url, conf.task_always_eager
    conf.broker_url, conf.task_always_eager = redis_proxy.url("redis", f"/{db}"), False
    yield Broker(redis_proxy, db, direct)
    conf.broker_url, conf.task_always_eager = saved
    direct.delete("celery")
