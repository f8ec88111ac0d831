"""API-key authentication, run on every server-to-server call.

Baseline: the same lookup as one raw SQL statement through Django's connection (no ORM).
Ours: `api_key_authenticate`, which also decides whether to touch last-used time.
"""

from _setup import setup_django, timed

setup_django()

from django.db import connection  # noqa: E402

from teams import (  # noqa: E402
    api_keys,
    services,
)
from teams.models import ApiKey, Organization, User  # noqa: E402

N = 2000

user, _ = User.objects.get_or_create(email="bench@example.com")
org = Organization.objects.filter(slug="bench").first() or services.organization_create(
    owner=user, name="bench"
)
ApiKey.objects.filter(organization=org).delete()
_, secret = api_keys.api_key_create(organization=org, actor=user, name="bench")
digest = ApiKey.digest_of(secret)

SQL = (
    "select k.id, k.last_used_at, o.id, o.slug from teams_apikey k "
    "join teams_organization o on o.id = k.organization_id "
    "where k.digest = %s and k.revoked_at is null"
)


def raw():
    with connection.cursor() as cursor:
        cursor.execute(SQL, [ApiKey.digest_of(secret)])
        cursor.fetchone()


def ours():
    api_keys.api_key_authenticate(secret)


baseline = timed(raw, N)
measured = timed(ours, N)
print(f"raw lookup        {baseline * 1e6:8.1f} µs/call")
print(f"api_key_authenticate {measured * 1e6:8.1f} µs/call")
print(f"ratio             {measured / baseline:8.2f}x raw")
