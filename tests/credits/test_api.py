import time

import pytest
from django.core import signing

from credits import services
from credits.models import CreditAccount, CreditReservation, CreditTransaction
from credits.selectors import CURSOR_SALT
from teams import api_keys
from teams.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def key_client(api_client, org, owner):
    _, secret = api_keys.api_key_create(organization=org, actor=owner, name="server")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return api_client


def _post(client, path, data=None, key=None):
    extra = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.post(f"/api/v1/credits/{path}", data or {}, format="json", **extra)


def test_it_reports_the_balance(key_client, fund):
    fund(120)
    body = key_client.get("/api/v1/credits/balance").json()
    assert body | {"runway_days": None} == {
        "balance": 120,
        "held": 0,
        "frozen": 0,
        "available": 120,
        "overdraft_allowance": 0,
        "low_balance_threshold": 100,
        "low_balance_percent": 0,
        "is_low": False,
        "runway_days": None,
        "lifetime_purchased": 120,
        "lifetime_used": 0,
    }


def test_it_consumes_once_per_idempotency_key(key_client, org, fund):
    fund(100)
    first = _post(key_client, "consume", {"amount": 30, "reference_id": "job-7"}, key="abc")
    again = _post(key_client, "consume", {"amount": 30, "reference_id": "job-7"}, key="abc")
    assert first.status_code == 201 and again.status_code == 200
    assert again["Idempotent-Replayed"] == "true"
    assert first.json()["id"] == again.json()["id"]
    assert first.json()["balance_after"] == 70
    assert CreditAccount.objects.get(organization=org).balance == 70


def test_it_consumes_an_action_priced_per_token(key_client, fund):
    fund(100)
    body = _post(key_client, "consume", {"action": "gpt-4", "tokens": 2500}, key="t").json()
    assert (body["amount"], body["action"], body["quantity"], body["price_version"]) == (
        -25,
        "gpt-4",
        2500,
        1,
    )


def test_it_answers_402_with_what_is_needed(key_client, fund):
    fund(5)
    response = _post(key_client, "consume", {"amount": 6}, key="k")
    assert response.status_code == 402
    assert response.json() | {"message": ""} == {
        "code": "insufficient_credits",
        "message": "",
        "required": 6,
        "balance": 5,
        "available": 5,
    }
    assert not CreditTransaction.objects.filter(type="consumption").exists()


def test_it_requires_an_idempotency_key_and_valid_input(key_client, fund):
    fund(100)
    response = _post(key_client, "consume", {"amount": 6})
    assert (response.status_code, response.json()["code"]) == (400, "idempotency_key_required")
    for data, field in (
        ({"amount": 0}, "amount"),
        ({"amount": "lots"}, "amount"),
        ({"amount": 2.5}, "amount"),
        ({"quantity": 3}, "action"),
        ({"action": "gpt-4", "quantity": 3, "tokens": 4}, "tokens"),
        ({"action": "teleport"}, "action"),
        ({}, "amount"),
    ):
        response = _post(key_client, "consume", data, key="k")
        assert response.status_code == 400, data
        assert field in response.json()["fields"], data
    assert CreditAccount.objects.get().balance == 100


def test_it_reserves_confirms_and_cancels(key_client, org, fund):
    fund(100)
    held = _post(key_client, "reservations", {"amount": 40}, key="r1")
    assert held.status_code == 201
    code = held.json()["id"]
    assert key_client.get("/api/v1/credits/balance").json()["available"] == 60
    too_much = _post(key_client, f"reservations/{code}/confirm", {"amount": 41})
    assert too_much.status_code == 400 and too_much.json()["code"] == "amount_exceeds_hold"
    confirmed = _post(key_client, f"reservations/{code}/confirm", {"amount": 25})
    assert confirmed.json()["status"] == "confirmed"
    assert confirmed.json()["transaction"]["amount"] == -25
    assert _post(key_client, f"reservations/{code}/cancel").status_code == 409
    other = _post(key_client, "reservations", {"action": "image"}, key="r2").json()
    cancelled = _post(key_client, f"reservations/{other['id']}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    account = CreditAccount.objects.get(organization=org)
    assert (account.balance, account.held) == (75, 0)


def test_it_lists_transactions_with_filters_and_a_cursor(key_client, org, fund):
    fund(100)
    for i in range(5):
        services.credits_consume(organization=org, amount=1, idempotency_key=f"c{i}", reference_id=f"job-{i}")
    first = key_client.get("/api/v1/credits/transactions?limit=2").json()
    assert [t["reference_id"] for t in first["data"]] == ["job-4", "job-3"]
    second = key_client.get(f"/api/v1/credits/transactions?limit=2&cursor={first['next_cursor']}").json()
    assert [t["reference_id"] for t in second["data"]] == ["job-2", "job-1"]
    last = key_client.get(f"/api/v1/credits/transactions?limit=2&cursor={second['next_cursor']}").json()
    assert len(last["data"]) == 2 and last["next_cursor"] is None
    purchases = key_client.get("/api/v1/credits/transactions?type=purchase").json()["data"]
    assert [t["amount"] for t in purchases] == [100]
    assert len(key_client.get("/api/v1/credits/transactions?reference_id=job-2").json()["data"]) == 1
    assert (
        key_client.get("/api/v1/credits/transactions?since=2020-01-01&until=2020-01-02").json()["data"] == []
    )
    assert key_client.get("/api/v1/credits/transactions?cursor=forged").json()["data"] == []
    assert key_client.get("/api/v1/credits/transactions?type=gift").status_code == 400


def test_a_position_is_always_the_same_cursor_and_older_cursors_still_work(
    key_client, org, fund, monkeypatch
):
    fund(100)
    for i in range(3):
        services.credits_consume(organization=org, amount=1, idempotency_key=f"c{i}", reference_id=f"job-{i}")
    first = key_client.get("/api/v1/credits/transactions?limit=1").json()["next_cursor"]
    later = time.time() + 3600
    monkeypatch.setattr(signing.time, "time", lambda: later)
    assert key_client.get("/api/v1/credits/transactions?limit=1").json()["next_cursor"] == first
    newest = CreditTransaction.objects.filter(organization=org).order_by("-pk").first()
    legacy = signing.dumps(newest.pk, salt=CURSOR_SALT)
    page = key_client.get("/api/v1/credits/transactions", {"limit": 1, "cursor": legacy}).json()
    assert [t["reference_id"] for t in page["data"]] == ["job-1"]


def test_it_lists_packages_and_estimates(key_client):
    services.credits_seed_packages()
    services.credits_seed_packages()
    packages = key_client.get("/api/v1/credits/packages").json()["data"]
    assert [p["id"] for p in packages][:3] == ["pack-10", "pack-50", "pack-100"]
    assert packages[1]["total_credits"] == 55_000
    estimate = _post(key_client, "estimate", {"action": "gpt-4o-mini", "tokens": 1500}).json()
    assert estimate == {
        "action": "gpt-4o-mini",
        "quantity": 1500,
        "credits": 3,
        "price_version": 1,
        "unit": "token",
        "unit_size": 1000,
    }
    assert _post(key_client, "estimate", {"action": "teleport"}).json()["code"] == "unknown_action"


def test_a_member_session_consumes_but_only_staff_adjust(api_client, org, member, fund):
    fund(50)
    api_client.force_authenticate(member)
    response = api_client.post(
        "/api/v1/credits/consume",
        {"amount": 5},
        format="json",
        HTTP_X_TALLY_ORG="acme",
        HTTP_IDEMPOTENCY_KEY="m",
    )
    assert response.status_code == 201
    assert CreditTransaction.objects.get(type="consumption").actor == member
    adjust = api_client.post(
        "/api/v1/credits/adjustments", {"amount": 5, "reason": "x"}, format="json", HTTP_X_TALLY_ORG="acme"
    )
    assert (adjust.status_code, adjust.json()["code"]) == (403, "staff_only")
    member.is_staff = True
    member.save()
    adjust = api_client.post(
        "/api/v1/credits/adjustments",
        {"amount": -5, "reason": "Test"},
        format="json",
        HTTP_X_TALLY_ORG="acme",
    )
    assert adjust.status_code == 201
    assert AuditEvent.objects.filter(action="credits.adjusted", actor=member).exists()


def test_a_key_cannot_touch_another_orgs_reservation(api_client, org, outsider, fund):
    fund(50)
    theirs = services.credit_reservation_create(organization=org, amount=5, idempotency_key="x")
    other = outsider.memberships.get().organization
    _, secret = api_keys.api_key_create(organization=other, actor=outsider, name="theirs")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    for action in ("confirm", "cancel"):
        assert _post(api_client, f"reservations/{theirs.code}/{action}").status_code == 404
    assert CreditReservation.objects.get().status == "held"


def test_the_schema_lists_the_credits_api(client):
    assert b"/api/v1/credits/consume" in client.get("/api/v1/schema/").content
