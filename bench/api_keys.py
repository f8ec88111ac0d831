"""API-key authentication, run on every server-to-server call.

Baseline: one `cache.get` from the same Redis cache (what a cached lookup cannot do without),
and, for scale, the lookup as one raw SQL statement. Ours: `api_key_authenticate` with a warm
key cache (`teams/keycache.py`: one Redis round trip for the generation, no query).
Budget: at most 1.5x one cache get.
"""

import os

os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")

from _setup import setup_django, timed

setup_django()

from django.core.cache import cache  # noqa: E402
from django.db import connection  # noqa: E402

from teams import api_keys, services  # noqa: E402
from teams.models import ApiKey, Organization, User  # noqa: E402

N = 5000
BUDGET = 1.5

user, _ = User.objects.get_or_create(email="bench@example.com")
org = Organization.objects.filter(slug="bench").first() or services.organization_create(
    owner=user, name="bench"
)
ApiKey.objects.filter(organization=org).delete()
_, secret = api_keys.api_key_create(organization=org, actor=user, name="bench")
cache.set("bench:one-key", ("x", 1), None)

SQL = (
    "select k.id, k.last_used_at, o.id, o.slug from teams_apikey k "
    "join teams_organization o on o.id = k.organization_id "
    "where k.digest = %s and k.revoked_at is null"
)


def raw_sql():
    with connection.cursor() as cursor:
        cursor.execute(SQL, [ApiKey.digest_of(secret)])
        cursor.fetchone()


def ours():
    api_keys.api_key_authenticate(secret)


# Alternating rounds: the machine's load weighs on both sides of the ratio.
pairs = [(timed(lambda: cache.get("bench:one-key"), N), timed(ours, N)) for _ in range(3)]
baseline = min(b for b, _ in pairs)
measured = min(m for _, m in pairs)
ratio = sorted(m / b for b, m in pairs)[1]
print(f"cache.get (baseline)     {baseline * 1e6:8.1f} µs/call")
print(f"raw SQL lookup           {timed(raw_sql, N) * 1e6:8.1f} µs/call")
print(f"api_key_authenticate     {measured * 1e6:8.1f} µs/call  {ratio:5.2f}x one cache get")
print(f"budget: API-key authentication <= {BUDGET}x one cache get: {'met' if ratio <= BUDGET else 'not met'}")
