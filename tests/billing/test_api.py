import pytest

from billing import entitlements
from teams import api_keys

pytestmark = pytest.mark.django_db


@pytest.fixture
def key_client(api_client, org, owner):
    _, secret = api_keys.api_key_create(organization=org, actor=owner, name="server")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return api_client


def test_it_checks_a_feature(key_client, org):
    entitlements.consume(org, "api_calls", 990, idempotency_key="fill")
    body = key_client.post(
        "/api/v1/entitlements/check", {"feature": "api_calls", "requested": 20}, format="json"
    ).json()
    assert (body["allowed"], body["reason"], body["limit"], body["used"], body["remaining"]) == (
        False,
        "quota_exceeded",
        1000,
        990,
        10,
    )
    assert body["upgrade"]["url"].startswith("http://testserver/pricing/#")


def test_it_lists_every_feature_with_its_period(key_client, org):
    data = key_client.get("/api/v1/entitlements").json()["data"]
    by_feature = {d["feature"]: d for d in data}
    assert list(by_feature)[:2] == ["projects", "team_members"]
    assert by_feature["api_calls"]["limit"] == 1000
    assert by_feature["api_calls"]["period_end"] is not None
    assert by_feature["sso"]["allowed"] is False


def test_a_session_caller_names_the_organization(api_client, org, member):
    api_client.force_authenticate(member)
    response = api_client.get("/api/v1/entitlements/", HTTP_X_TALLY_ORG=org.slug)
    assert response.status_code == 200


def test_bad_input_gets_a_field_error(key_client):
    response = key_client.post("/api/v1/entitlements/check", {"feature": "teleport"}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "unknown_feature"
    response = key_client.post(
        "/api/v1/entitlements/check", {"feature": "sso", "requested": -1}, format="json"
    )
    assert response.json()["fields"]["requested"]
