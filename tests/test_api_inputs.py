"""Malformed input anywhere in the API gets a JSON 4xx with a stable code and changes nothing."""

import json

import pytest

from billing.models import UsageEvent
from credits import services as credit_services
from credits.models import CreditReservation, CreditTransaction
from projects.models import Generation
from teams import api_keys
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def key_client(api_client, org, owner, settings):
    settings.CREDITS_WELCOME_BONUS = 0
    _, secret = api_keys.api_key_create(organization=org, actor=owner, name="server")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return api_client


@pytest.fixture
def funded(org):
    credit_services.credits_grant(organization=org, amount=1_000, source="purchase", idempotency_key="f")


def _raw(client, path, body: str | bytes, **extra):
    return client.generic("POST", path, body, content_type="application/json", **extra)


def _assert_error(response, status: int, code: str):
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert "ErrorDetail" not in json.dumps(body)
    return body


# --- Nesting depth and body size -------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/credits/consume",
        "/api/v1/credits/reservations",
        "/api/v1/credits/estimate",
        "/api/v1/entitlements/check",
        "/api/v1/usage/events",
        "/api/v1/billing/checkout",
        "/api/v1/projects/",
    ],
)
def test_it_refuses_json_nested_1200_levels_deep(key_client, path):
    body = '{"metadata": ' + "[" * 1200 + "]" * 1200 + "}"
    response = _raw(key_client, path, body, HTTP_IDEMPOTENCY_KEY="deep")
    _assert_error(response, 400, "json_too_deep")
    assert not CreditTransaction.objects.exists()


def test_it_accepts_json_nested_within_the_limit(key_client, funded):
    metadata = {"a": {"b": {"c": [1, [2, [3]]]}}}
    response = _raw(
        key_client,
        "/api/v1/credits/consume",
        json.dumps({"amount": 1, "metadata": metadata}),
        HTTP_IDEMPOTENCY_KEY="ok",
    )
    assert response.status_code == 201
    assert response.json()["metadata"] == metadata


def test_it_refuses_a_body_over_the_size_limit_before_parsing_it(key_client, settings):
    settings.API_MAX_BODY_BYTES = 1_000
    body = json.dumps({"amount": 1, "description": "x" * 2_000})
    response = _raw(key_client, "/api/v1/credits/consume", body, HTTP_IDEMPOTENCY_KEY="big")
    _assert_error(response, 413, "payload_too_large")
    assert not CreditTransaction.objects.exists()


def test_it_refuses_a_body_that_is_not_json(key_client):
    response = _raw(key_client, "/api/v1/credits/consume", b'{"amount": ', HTTP_IDEMPOTENCY_KEY="x")
    _assert_error(response, 400, "malformed_request")
    response = key_client.post(
        "/api/v1/credits/consume", {"amount": "1"}, format="multipart", HTTP_IDEMPOTENCY_KEY="x"
    )
    _assert_error(response, 415, "unsupported_media_type")


# --- Characters PostgreSQL cannot store --------------------------------------------------------

UNSTORABLE = ["nul\u0000byte", "lone \ud800 surrogate"]


def _dumps(value) -> str:
    # json.dumps escapes a lone surrogate as \ud800, just as an attacker would send it.
    return json.dumps(value)


@pytest.mark.parametrize("text", UNSTORABLE)
@pytest.mark.parametrize("where", ["value", "key", "nested"])
def test_it_refuses_unstorable_characters_in_consume_metadata(key_client, funded, org, text, where):
    metadata = {"value": {"note": text}, "key": {text: 1}, "nested": {"a": [{"b": text}]}}[where]
    response = _raw(
        key_client,
        "/api/v1/credits/consume",
        _dumps({"amount": 5, "metadata": metadata}),
        HTTP_IDEMPOTENCY_KEY="nul",
    )
    body = _assert_error(response, 400, "invalid_request")
    assert list(body["fields"]) == ["metadata"]
    assert CreditTransaction.objects.filter(type="consumption").count() == 0


@pytest.mark.parametrize("text", UNSTORABLE)
def test_it_refuses_unstorable_characters_in_reservation_metadata(key_client, funded, text):
    response = _raw(
        key_client,
        "/api/v1/credits/reservations",
        _dumps({"amount": 5, "metadata": {"note": text}}),
        HTTP_IDEMPOTENCY_KEY="nul",
    )
    body = _assert_error(response, 400, "invalid_request")
    assert list(body["fields"]) == ["metadata"]
    assert not CreditReservation.objects.exists()


@pytest.mark.parametrize("text", UNSTORABLE)
def test_it_refuses_unstorable_characters_in_an_idempotency_key(key_client, funded, text):
    response = key_client.post(
        "/api/v1/credits/consume", {"amount": 5}, format="json", HTTP_IDEMPOTENCY_KEY=text
    )
    body = _assert_error(response, 400, "invalid_idempotency_key")
    assert list(body["fields"]) == ["Idempotency-Key"]
    assert CreditTransaction.objects.filter(type="consumption").count() == 0


@pytest.mark.parametrize("text", UNSTORABLE)
def test_it_refuses_unstorable_characters_in_a_checkout_addon_key(key_client, text):
    response = _raw(key_client, "/api/v1/billing/checkout", _dumps({"plan": "pro", "addons": {text: 1}}))
    body = _assert_error(response, 400, "invalid_request")
    assert list(body["fields"]) == ["addons"]


@pytest.mark.parametrize("text", UNSTORABLE)
@pytest.mark.parametrize("where", ["id", "properties"])
def test_it_rejects_only_the_usage_event_with_unstorable_characters(key_client, org, text, where):
    bad = (
        {"id": f"bad{text}", "meter": "api_calls"}
        if where == "id"
        else {"id": "bad", "meter": "api_calls", "properties": {"note": text}}
    )
    events = [{"id": "ok-1", "meter": "api_calls"}, bad, {"id": "ok-2", "meter": "api_calls"}]
    response = _raw(key_client, "/api/v1/usage/events", _dumps({"events": events}))
    assert response.status_code == 200, response.content[:300]
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 1)
    rejected = body["results"][1]
    assert (rejected["status"], rejected["field"]) == ("rejected", where)
    assert rejected["code"] == "invalid_characters"
    assert set(UsageEvent.objects.filter(organization=org).values_list("event_id", flat=True)) == {
        "ok-1",
        "ok-2",
    }


# A query string cannot carry a lone surrogate (Django decodes it with replacement characters).


def test_it_refuses_a_nul_in_query_parameters(key_client):
    response = key_client.get("/api/v1/credits/transactions", {"reference_id": "a\x00", "cursor": "b"})
    body = _assert_error(response, 400, "invalid_characters")
    assert list(body["fields"]) == ["reference_id"]


def test_a_session_naming_its_organization_with_a_nul_gets_a_json_error(api_client, member):
    api_client.force_authenticate(member)
    _assert_error(api_client.get("/api/v1/entitlements", HTTP_X_TALLY_ORG="acme\x00"), 404, "not_found")
    _assert_error(api_client.get("/api/v1/entitlements", {"org": "acme\x00"}), 400, "invalid_characters")


def test_a_page_refuses_a_nul_in_its_query_string(client_for, owner, org):
    response = client_for(owner).get(f"/o/{org.slug}/billing/change/", {"plan": "pro\x00"})
    assert response.status_code == 400


# --- Bodies that are not objects ----------------------------------------------------------------


@pytest.mark.parametrize("body", ["[1, 2]", '"x"', "null", "7"])
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/credits/consume",
        "/api/v1/credits/reservations",
        "/api/v1/credits/estimate",
        "/api/v1/credits/purchase",
        "/api/v1/entitlements/check",
        "/api/v1/usage/events",
        "/api/v1/billing/checkout",
        "/api/v1/billing/portal",
        "/api/v1/projects/",
    ],
)
def test_it_refuses_a_body_that_is_not_an_object(key_client, funded, path, body):
    response = _raw(key_client, path, body, HTTP_IDEMPOTENCY_KEY="k")
    _assert_error(response, 400, "invalid_request")
    assert CreditTransaction.objects.filter(type="consumption").count() == 0


@pytest.mark.parametrize("body", ["[1, 2]", '"x"', "null"])
def test_it_refuses_a_generation_body_that_is_not_an_object(key_client, org, funded, body):
    project = ProjectFactory(organization=org)
    response = _raw(key_client, f"/api/v1/projects/{project.code}/generations/", body)
    _assert_error(response, 400, "invalid_request")
    assert not Generation.objects.exists()
    assert not CreditReservation.objects.exists()


def test_it_refuses_a_patch_body_that_is_not_an_object(key_client, org):
    project = ProjectFactory(organization=org, name="Keep")
    response = key_client.generic(
        "PATCH", f"/api/v1/projects/{project.code}/", "[1]", content_type="application/json"
    )
    _assert_error(response, 400, "invalid_request")
    project.refresh_from_db()
    assert project.name == "Keep"


def test_a_reservation_confirm_body_that_is_not_an_object_changes_nothing(key_client, funded):
    created = key_client.post(
        "/api/v1/credits/reservations", {"amount": 5}, format="json", HTTP_IDEMPOTENCY_KEY="r"
    ).json()
    response = _raw(key_client, f"/api/v1/credits/reservations/{created['id']}/confirm", "[1]")
    _assert_error(response, 400, "invalid_request")
    assert CreditReservation.objects.get().status == "held"


# --- Usage batches ------------------------------------------------------------------------------


def test_a_null_event_is_rejected_alone_with_a_readable_reason(key_client, org):
    events = [{"id": "a", "meter": "api_calls"}, None, {"id": "b", "meter": "api_calls"}]
    response = key_client.post("/api/v1/usage/events", {"events": events}, format="json")
    assert response.status_code == 200, response.content[:300]
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 0, 1)
    assert [r["status"] for r in body["results"]] == ["accepted", "rejected", "accepted"]
    assert body["results"][1]["code"] == "invalid_event"
    assert body["results"][1]["message"] == "Each event is a JSON object."
    assert UsageEvent.objects.filter(organization=org).count() == 2


@pytest.mark.parametrize("events", [None, "x", {"id": "a"}, 5])
def test_a_batch_that_is_not_a_list_gets_a_readable_field_error(key_client, events):
    response = key_client.post("/api/v1/usage/events", {"events": events}, format="json")
    body = _assert_error(response, 400, "invalid_request")
    assert list(body["fields"]) == ["events"]
    assert all(isinstance(m, str) and "{" not in m for m in body["fields"]["events"])


def test_nested_field_errors_are_flattened_to_readable_paths(key_client, funded):
    response = key_client.post(
        "/api/v1/billing/checkout", {"plan": "pro", "addons": {"extra_seats": "many"}}, format="json"
    )
    body = _assert_error(response, 400, "invalid_request")
    assert body["fields"] == {"addons.extra_seats": ["Must be a whole number."]}


# --- JSON errors for every status under /api/ ---------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nowhere",
        "/api/v1/projects/not-a-uuid/",
        "/api/v1/credits/reservations/not-a-uuid/confirm",
        "/api/nothing-here/",
    ],
)
def test_unknown_api_paths_answer_with_a_json_404(key_client, path):
    _assert_error(key_client.get(path), 404, "not_found")


def test_a_wrong_method_answers_with_a_json_405(key_client):
    body = _assert_error(key_client.delete("/api/v1/credits/balance"), 405, "method_not_allowed")
    assert "DELETE" in body["message"]


def test_an_unauthenticated_call_answers_with_a_json_401(api_client):
    _assert_error(api_client.get("/api/v1/credits/balance"), 401, "not_authenticated")


def test_a_server_error_under_the_api_answers_with_json(key_client, monkeypatch):
    from credits import api

    def explode(request):
        raise RuntimeError("boom")

    monkeypatch.setattr(api.BalanceApi, "get", explode)
    key_client.raise_request_exception = False
    body = _assert_error(key_client.get("/api/v1/credits/balance"), 500, "server_error")
    assert "boom" not in body["message"]


def test_pages_keep_their_html_errors(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


# --- Pages --------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", "?session_id=", "?session_id=../../v1/customers"])
def test_the_checkout_success_page_without_a_session_is_a_clear_400(client_for, owner, org, query):
    response = client_for(owner).get(f"/o/{org.slug}/billing/success/{query}")
    assert response.status_code == 400
    assert b"No checkout to show" in response.content


def test_the_checkout_success_page_refuses_a_nul_in_its_session_id(client_for, owner, org):
    response = client_for(owner).get(f"/o/{org.slug}/billing/success/?session_id=cs_%00")
    assert response.status_code == 400


# --- Found by schemathesis: the schema's promises, kept by the server -----------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/projects/", {"name": 0}, "name"),
        ("/api/v1/projects/", {"name": "ok", "description": 7}, "description"),
        ("/api/v1/credits/consume", {"amount": "5"}, "amount"),
        ("/api/v1/credits/consume", {"amount": 5.0}, "amount"),
        ("/api/v1/credits/consume", {"amount": True}, "amount"),
        ("/api/v1/entitlements/check", {"feature": 12}, "feature"),
    ],
)
def test_body_fields_take_only_their_json_type(key_client, funded, path, body, field):
    response = key_client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY="types")
    body = _assert_error(response, 400, "invalid_request")
    assert field in body["fields"]
    assert CreditTransaction.objects.filter(type="consumption").count() == 0


def test_unknown_body_properties_are_refused_with_the_other_errors(key_client, org):
    response = key_client.post("/api/v1/projects/", {"nmae": "Typo"}, format="json")
    body = _assert_error(response, 400, "invalid_request")
    assert body["fields"] == {"name": ["This field is required."], "nmae": ["Unknown field."]}
    assert not org.projects.exists()


def test_an_empty_date_filter_is_refused(key_client):
    response = key_client.get("/api/v1/credits/transactions", {"until": ""})
    body = _assert_error(response, 400, "invalid_request")
    assert list(body["fields"]) == ["until"]


def test_blank_text_filters_mean_no_filter(key_client, funded):
    response = key_client.get("/api/v1/credits/transactions", {"reference_id": "", "cursor": ""})
    assert response.status_code == 200
    assert len(response.json()["data"]) == 1


def test_a_blank_optional_idempotency_key_is_refused(key_client, org):
    project = ProjectFactory(organization=org)
    response = key_client.post(
        f"/api/v1/projects/{project.code}/generations/",
        {"prompt": "hi"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="",
    )
    body = _assert_error(response, 400, "invalid_idempotency_key")
    assert list(body["fields"]) == ["Idempotency-Key"]
    assert not Generation.objects.exists()


def test_x_confirm_credits_takes_only_its_documented_values(key_client, org):
    project = ProjectFactory(organization=org)
    path = f"/api/v1/projects/{project.code}/generations/"
    response = key_client.post(path, {"prompt": "hi"}, format="json", HTTP_X_CONFIRM_CREDITS="AAA")
    body = _assert_error(response, 400, "invalid_header")
    assert list(body["fields"]) == ["X-Confirm-Credits"]
    assert not Generation.objects.exists()
    response = key_client.post(path, {"prompt": "hi"}, format="json", HTTP_X_CONFIRM_CREDITS="true")
    assert response.status_code == 201


def test_the_usage_page_survives_a_page_number_past_any_offset(client_for, owner, org):
    client = client_for(owner)
    client.raise_request_exception = False
    assert client.get(f"/o/{org.slug}/usage/", {"page": "9" * 25}).status_code == 200
