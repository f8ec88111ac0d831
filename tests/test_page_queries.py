"""Every page of an organization runs a bounded number of queries once warm, whatever the size of
its ledgers and logs: the budget is 12 (billing, usage and pricing are above it, see
`OVER_BUDGET`)."""

import pytest
from django.urls import reverse

from billing import entitlements, metering
from billing.models import Plan
from credits import services as credit_services
from projects import services as project_services
from teams import api_keys

pytestmark = pytest.mark.django_db

BUDGET = 12
# Pages still above the budget, at what they run today (the plan cards and discounts read their
# own rows; the billing page's storage limit reads its gauge's latest value, and its add-ons,
# their features and the billing currency three more; the credits page lists the action
# prices): a regression past these fails too.
OVER_BUDGET = {"billing": 23, "usage": 21, "pricing": 21, "credits": 13}

PAGES = [
    ("dashboard", True),
    ("organization_settings", True),
    ("members", True),
    ("api_keys", True),
    ("billing", True),
    ("billing_upcoming", True),
    ("billing_notices", True),
    ("usage", True),
    ("credits", True),
    ("credits_widget", True),
    ("project_list", True),
    ("pricing", False),
    ("landing", False),
]


@pytest.fixture
def busy_org(org, owner, member):
    """Acme with some of everything, so each page has rows to show."""
    entitlements.subscription_set(organization=org, plan=Plan.objects.get(key="pro_monthly"), status="active")
    credit_services.credits_grant(organization=org, amount=10_000, source="purchase", idempotency_key="g")
    for i in range(40):
        credit_services.credits_consume(organization=org, amount=1 + i % 3, idempotency_key=f"c{i}")
    metering.usage_ingest(
        organization=org, events=[{"id": f"e{i}", "meter": "api_calls", "value": 1} for i in range(40)]
    )
    for i in range(3):
        project_services.project_create(organization=org, actor=owner, name=f"Project {i}")
    api_keys.api_key_create(organization=org, actor=owner, name="server")
    return org


@pytest.mark.parametrize(("page", "org_scoped"), PAGES, ids=[p for p, _ in PAGES])
def test_it_runs_a_bounded_number_of_queries(
    client_for, busy_org, owner, page, org_scoped, django_assert_max_num_queries
):
    client = client_for(owner)
    url = reverse(page, args=[busy_org.slug]) if org_scoped else reverse(page)
    assert client.get(url).status_code == 200  # cold: caches fill
    with django_assert_max_num_queries(OVER_BUDGET.get(page, BUDGET)):
        assert client.get(url).status_code == 200


def test_every_page_and_hot_api_call_reads_the_growing_tables_through_an_index(
    client_for, api_client, busy_org, owner
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.queryplans import scanning, statements

    _, secret = api_keys.api_key_create(organization=busy_org, actor=owner, name="plans")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    client = client_for(owner)
    with CaptureQueriesContext(connection) as captured:
        for page, org_scoped in PAGES:
            url = reverse(page, args=[busy_org.slug]) if org_scoped else reverse(page)
            assert client.get(url).status_code == 200, page
        calls = [
            ("/api/v1/entitlements/check", {"feature": "ai_generations"}, 200),
            ("/api/v1/credits/consume", {"amount": 1}, 201),
            (
                "/api/v1/usage/events",
                {
                    "events": [
                        {"id": "plan-1", "meter": "active_users", "value": 1, "properties": {"user_id": "u1"}}
                    ]
                },
                200,
            ),
        ]
        for n, (path, body, status) in enumerate(calls):
            response = api_client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=f"plans-{n}")
            assert response.status_code == status, (path, response.content)
        for path in (
            "/api/v1/credits/balance",
            "/api/v1/credits/transactions",
            "/api/v1/usage/summary",
            "/api/v1/entitlements",
            "/api/v1/billing/status",
        ):
            assert api_client.get(path).status_code == 200, path
    sqls = statements(captured)
    assert len(sqls) > 50
    assert scanning(sqls) == []
