"""An event's id is unique per organization and source through a 16-byte digest of the three
(tests/common/test_digest.py): an id is still an id, of any length and characters, one event
per source and organization."""

import pytest

from billing import entitlements, metering
from billing.models import UsageEvent
from credits import services
from tests.conftest import subscribed
from tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db

IDS = ["evt-1", "0f8fad5b-d9cb-469f-a165-70867728950e", "événement ✓ 🧾", "x" * 255, "a:b", ""]


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


def test_a_credit_key_is_one_ledger_line_and_one_hold_per_organization(org, settings):
    settings.CREDITS_WELCOME_BONUS = 0
    other_org = OrganizationFactory(slug="globex")
    for organization in (org, other_org):
        services.credits_grant(organization=organization, amount=100, source="purchase", idempotency_key="k")
    for key in IDS[:-1]:
        for organization in (org, other_org):
            spent = services.credits_consume(organization=organization, amount=2, idempotency_key=key)
            again = services.credits_consume(organization=organization, amount=2, idempotency_key=key)
            assert (spent.replayed, again.replayed, again.pk) == (False, True, spent.pk)
            held = services.credit_reservation_create(
                organization=organization, amount=1, idempotency_key=key
            )
            again = services.credit_reservation_create(
                organization=organization, amount=1, idempotency_key=key
            )
            assert (held.replayed, again.replayed, again.pk) == (False, True, held.pk)
    for organization in (org, other_org):
        account = services.credit_account_for(organization=organization)
        assert (account.balance, account.held) == (100 - 5 * 2, 5)
