"""Unique keys indexed by their digest (common/digest.py): the digest is SHA-256's, each index
serves the lookups that find a replay, and the indexes of the keys themselves are gone."""

import hashlib
import uuid

import pytest
from django.db import connection, transaction

from billing.models import UsageEvent
from common.digest import matching
from credits.models import CreditReservation, CreditTransaction

pytestmark = pytest.mark.django_db

KEYS = ["evt-1", "0f8fad5b-d9cb-469f-a165-70867728950e", "événement ✓ 🧾", "x" * 255, "a:b", ""]


def sha256_digest(*parts) -> uuid.UUID:
    return uuid.UUID(bytes=hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:16])


@pytest.mark.parametrize("key", KEYS)
def test_the_digest_is_the_first_16_bytes_of_sha256_of_the_parts_joined(key):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tally_digest(%s, %s), tally_digest(%s, %s, %s)", [7, key, 9_000_000_001, "ingest", key]
        )
        assert cursor.fetchone() == (sha256_digest(7, key), sha256_digest(9_000_000_001, "ingest", key))


@pytest.mark.parametrize(
    "model, values, index, gone",
    [
        (
            UsageEvent,
            {"organization_id": 1, "source": "consume", "event_id": "k"},
            "billing_usageevent_unique_digest",
            "billing_usageevent_unique_id",
        ),
        (
            CreditTransaction,
            {"organization_id": 1, "idempotency_key": "k"},
            "credits_credittransaction_unique_key_digest",
            "credits_credittransaction_unique_org_key",
        ),
        (
            CreditReservation,
            {"organization_id": 1, "idempotency_key": "k"},
            "credits_creditreservation_unique_key_digest",
            "credits_creditreservation_unique_org_key",
        ),
    ],
)
def test_a_replay_is_looked_up_through_the_unique_digest(model, values, index, gone):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # an empty table would be scanned anyway
        assert index in matching(model.objects, **values).explain()
    constraints = connection.introspection.get_constraints(connection.cursor(), model._meta.db_table)
    assert constraints[index]["unique"]
    assert gone not in constraints
