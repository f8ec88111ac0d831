"""The usage page: totals against quotas, a daily chart, the invoice preview, the events."""

import csv
import io

import pytest

from billing import entitlements, metering
from billing.models import Plan

pytestmark = pytest.mark.django_db


@pytest.fixture
def used(org):
    entitlements.subscription_set(
        organization=org, plan=Plan.objects.get(key="team_monthly"), status="active"
    )
    entitlements.invalidate(org)
    metering.usage_ingest(
        organization=org,
        events=[
            {"id": "gen-1", "meter": "ai_generations", "value": 505, "properties": {"model": "gpt"}},
            {"id": "call-1", "meter": "api_calls"},
            {"id": "=cmd", "meter": "api_calls"},
            {"id": "user-1", "meter": "active_users", "properties": {"user_id": "ann"}},
        ],
    )


def test_it_shows_totals_chart_preview_and_events(
    client_for, member, org, used, django_assert_max_num_queries
):
    client = client_for(member)
    with django_assert_max_num_queries(30):
        page = client.get(f"/o/{org.slug}/usage/")
    assert page.status_code == 200
    body = page.content.decode()
    assert 'data-testid="meter-ai_generations"' in body
    assert "of 50,000 included" in body  # api calls on the Team plan
    assert "$0.25" in body  # 5 generations past the 500 included, at 5 cents
    assert "gen-1" in body and "model=gpt" in body
    assert 'role="img"' in body


def test_it_filters_the_events(client_for, member, org, used):
    client = client_for(member)
    page = client.get(
        f"/o/{org.slug}/usage/", {"meter": "api_calls"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="events"
    )
    body = page.content.decode()
    assert "call-1" in body and "gen-1" not in body
    assert "<h1>" not in body  # only the fragment
    page = client.get(f"/o/{org.slug}/usage/", {"event_id": "gen"})
    assert "gen-1" in page.content.decode() and "call-1" not in page.content.decode()


def test_it_includes_units_recorded_by_the_product(client_for, member, org, used):
    entitlements.consume(org, "ai_generations", 2, idempotency_key="generation:1:abc")
    page = client_for(member).get(f"/o/{org.slug}/usage/", {"meter": "ai_generations"})
    assert "generation:1:abc" in page.content.decode()


def test_it_exports_the_filtered_events_as_csv(client_for, member, org, used):
    response = client_for(member).get(f"/o/{org.slug}/usage/events.csv", {"meter": "api_calls"})
    assert response["Content-Type"] == "text/csv"
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["timestamp", "meter", "id", "value", "period_start", "properties"]
    assert sorted(r[2] for r in rows[1:]) == ["'=cmd", "call-1"]


def test_a_free_plan_has_no_metered_invoice_lines(client_for, member, org):
    page = client_for(member).get(f"/o/{org.slug}/usage/")
    assert "bills no usage" in page.content.decode()
