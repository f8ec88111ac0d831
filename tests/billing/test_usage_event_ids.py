"""An event's id is unique per organization and source through a 16-byte digest of the three:
the digest is SHA-256's, the index it lives in is what finds duplicates and replays, and an id
is still an id (any length, any characters, one per source)."""

import hashlib
import uuid

import pytest
from django.db import connection, transaction

from billing import entitlements, metering
from billing.models import UsageEvent
from tests.conftest import subscribed
from tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db

IDS = ["evt-1", "0f8fad5b-d9cb-469f-a165-70867728950e", "événement ✓ 🧾", "x" * 255, "a:b", ""]


def sha256_digest(organization_id: int, source: str, event_id: str) -> uuid.UUID:
    return uuid.UUID(bytes=hashlib.sha256(f"{organization_id}:{source}:{event_id}".encode()).digest()[:16])


@pytest.mark.parametrize("event_id", IDS)
def test_the_digest_is_the_first_16_bytes_of_sha256_of_organization_source_and_id(event_id):
    with connection.cursor() as cursor:
        cursor.execute("SELECT billing_event_id_digest(%s, %s, %s)", [9_000_000_001, "ingest", event_id])
        assert cursor.fetchone()[0] == sha256_digest(9_000_000_001, "ingest", event_id)


def test_duplicates_and_replays_are_found_through_the_digest_index(org):
    subscribed(org, "enterprise")
    metering.usage_ingest(organization=org, events=[{"id": "evt-1", "meter": "api_calls"}])
    query = UsageEvent.objects.with_id(org.pk, UsageEvent.Source.INGEST, "evt-1")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a tiny table would be scanned anyway
        assert "billing_usageevent_unique_digest" in query.explain()
    assert query.get().event_id == "evt-1"
    index = connection.introspection.get_constraints(connection.cursor(), UsageEvent._meta.db_table)
    assert index["billing_usageevent_unique_digest"]["unique"]
    assert "billing_usageevent_unique_id" not in index


def test_the_same_id_is_one_event_per_source_and_organization(org):
    other_org = OrganizationFactory(slug="globex")
    subscribed(org, "enterprise")
    subscribed(other_org, "enterprise")
    for event_id in IDS[:-1]:
        for organization in (org, other_org):
            events = [{"id": event_id, "meter": "ai_generations", "value": 2}]
            assert metering.usage_ingest(organization=organization, events=events).accepted == 1
            assert metering.usage_ingest(organization=organization, events=events).accepted == 0
            decision = entitlements.consume(organization, "ai_generations", 3, idempotency_key=event_id)
            assert decision.allowed and not decision.replayed
            replay = entitlements.consume(organization, "ai_generations", 3, idempotency_key=event_id)
            assert replay.replayed and replay.requested == 3
    for organization in (org, other_org):
        stored = UsageEvent.objects.filter(organization=organization)
        assert stored.filter(source="ingest").count() == stored.filter(source="consume").count() == 5
        assert sum(stored.values_list("value", flat=True)) == 5 * (2 + 3)
