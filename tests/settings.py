"""Test settings: the real services on loopback (PostgreSQL, Redis), unless told otherwise."""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tally_test")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")


def _per_worker_redis(url: str, worker: str) -> str:
    """Each parallel test process gets its own Redis database (counting down from the one
    configured), as pytest-django gives each its own PostgreSQL database: tests clear the cache
    and read the broker's queue, and must not see another process's keys."""
    base, _, db = url.rpartition("/")
    index = int(worker.removeprefix("gw"))
    return f"{base}/{(int(db or 0) - index) % 16}"


if worker := os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["REDIS_URL"] = _per_worker_redis(os.environ["REDIS_URL"], worker)
os.environ.setdefault("DJANGO_DEBUG", "false")
os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-secret-key-not-used-anywhere-else-0123456789")

from config.settings import *  # noqa: E402, F403

# Hashing passwords slowly protects nothing in a test database and costs seconds per run.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# Tasks run in-process when queued; tests that need ordering or retries start a real worker.
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
# Static files come from the finders in tests; nothing is collected.
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True
# dj-stripe's schema in one migration (config/djstripe_schema, as the demo builds it): the same
# tables, built in seconds instead of the minute of CPU its own migrations take to plan per test
# database.
MIGRATION_MODULES = {"djstripe": "config.djstripe_schema.migrations"}
