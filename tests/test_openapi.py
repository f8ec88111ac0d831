"""The published OpenAPI schema describes the API that answers (schemathesis checks the answers
against it in tests/test_schemathesis.py); these tests pin the conventions it must keep."""

import io
import re

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from drf_spectacular.generators import SchemaGenerator

OPERATIONS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def _operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in OPERATIONS:
                yield path, method, operation


def test_it_generates_without_a_warning(tmp_path):
    # --fail-on-warn raises on any warning: name collisions, unresolved auth, missing types.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert yaml.safe_load((tmp_path / "schema.yaml").read_text())["openapi"].startswith("3.")


def test_component_names_are_unique_and_named_after_their_view(schema):
    names = set(schema["components"]["schemas"])
    assert not {"Input", "Output", "Filters"} & names
    assert {"ConsumeInput", "ReservationListInput", "BalanceOutput", "BillingCheckoutInput", "Error"} <= names
    consume = schema["paths"]["/api/v1/credits/consume/"]["post"]
    assert consume["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ConsumeInput")


def test_operation_ids_are_unique(schema):
    ids = [operation["operationId"] for _, _, operation in _operations(schema)]
    assert len(ids) == len(set(ids))


def test_the_bearer_api_key_scheme_is_declared_on_every_operation(schema):
    assert schema["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "tly_…",
        "description": schema["components"]["securitySchemes"]["apiKey"]["description"],
    }
    for path, method, operation in _operations(schema):
        assert {"apiKey": []} in operation["security"], (path, method)


def _header(operation, name):
    headers = [p for p in operation.get("parameters", []) if p["in"] == "header"]
    return next((p for p in headers if p["name"] == name), None)


@pytest.mark.parametrize(
    ("path", "required"),
    [
        ("/api/v1/credits/consume/", True),
        ("/api/v1/credits/reservations/", True),
        ("/api/v1/credits/adjustments/", False),
        ("/api/v1/projects/{code}/generations/", False),
    ],
)
def test_idempotency_key_is_documented(schema, path, required):
    operation = schema["paths"][path]["post"]
    assert _header(operation, "Idempotency-Key").get("required", False) is required


def test_every_operation_documents_the_org_header_and_retry_after(schema):
    for path, method, operation in _operations(schema):
        assert _header(operation, "X-Tally-Org") is not None, (path, method)
        assert "Retry-After" in operation["responses"]["429"]["headers"], (path, method)


def test_replays_and_credit_confirmation_headers_are_documented(schema):
    consume = schema["paths"]["/api/v1/credits/consume/"]["post"]
    assert "Idempotent-Replayed" in consume["responses"]["200"]["headers"]
    generate = schema["paths"]["/api/v1/projects/{code}/generations/"]["post"]
    assert _header(generate, "X-Confirm-Credits") is not None


def test_every_error_response_uses_the_shared_error_component(schema):
    for path, method, operation in _operations(schema):
        for status in ("400", "401", "403", "404", "429"):
            assert status in operation["responses"], (path, method, status)
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/Error", (path, method, status)
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["code", "message"]


def test_credit_endpoints_document_402_and_409(schema):
    for path in ("/api/v1/credits/consume/", "/api/v1/credits/reservations/"):
        assert {"402", "409"} <= set(schema["paths"][path]["post"]["responses"])


def test_lists_are_documented_as_their_envelope(schema):
    lists = {
        "/api/v1/credits/transactions/": "TransactionList",
        "/api/v1/credits/packages/": "PackageList",
        "/api/v1/entitlements/": "DecisionList",
        "/api/v1/projects/": "ProjectList",
        "/api/v1/projects/{code}/generations/": "GenerationList",
    }
    components = schema["components"]["schemas"]
    for path, name in lists.items():
        ok = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok["$ref"].endswith(f"/{name}")
        envelope = components[name]
        assert set(envelope["required"]) == {"data", "next_cursor"}
        assert envelope["properties"]["data"]["type"] == "array"
        assert envelope["properties"]["next_cursor"]["nullable"] is True


def test_created_resources_answer_201(schema):
    for path in (
        "/api/v1/billing/checkout/",
        "/api/v1/billing/portal/",
        "/api/v1/credits/purchase/",
        "/api/v1/projects/",
    ):
        responses = schema["paths"][path]["post"]["responses"]
        assert "201" in responses and "200" not in responses, path


def test_nullable_fields_are_nullable(schema):
    components = schema["components"]["schemas"]
    assert components["BillingStatusOutput"]["properties"]["plan"]["nullable"] is True
    assert components["BillingStatusOutput"]["properties"]["period_end"]["nullable"] is True
    assert components["TransactionOutput"]["properties"]["price_version"]["nullable"] is True
    assert "price_version" in components["TransactionOutput"]["required"]
    assert components["DecisionOutput"]["properties"]["upgrade"]["nullable"] is True


def test_request_bodies_are_json_only(schema):
    for path, method, operation in _operations(schema):
        if "requestBody" in operation:
            assert list(operation["requestBody"]["content"]) == ["application/json"], (path, method)


@pytest.mark.django_db
def test_the_reference_is_served_from_our_own_static_files(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert not re.search(r"""(src|href)=["']https?://""", page)
    # Swagger UI starts from a script of ours at a URL (not inline), so a strict CSP allows it.
    assert '<script src="/api/docs/?script="></script>' in page
    init = client.get("/api/docs/?script=")
    assert init.status_code == 200 and "/api/v1/schema/" in init.content.decode()
    bundle = "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
    assert client.get(bundle).status_code == 200
    assert client.get("/api/v1/schema/").status_code == 200


def test_created_objects_link_to_what_their_id_opens(schema):
    ids = {operation["operationId"] for _, _, operation in _operations(schema)}
    created = schema["paths"]["/api/v1/projects/"]["post"]["responses"]["201"]["links"]
    assert created["GetProject"] == {
        "operationId": "project_detail_get",
        "parameters": {"code": "$response.body#/id"},
        "description": "The project just created.",
    }
    held = schema["paths"]["/api/v1/credits/reservations/"]["post"]["responses"]
    assert (
        set(held["201"]["links"]) == set(held["200"]["links"]) == {"ConfirmReservation", "CancelReservation"}
    )
    for links in (created, held["201"]["links"]):
        assert {link["operationId"] for link in links.values()} <= ids


@pytest.mark.django_db
def test_check_deploy_reports_nothing_about_the_schema():
    # drf-spectacular's deploy check generates the schema and reports each of its warnings.
    # Other deploy checks may fail in a test process (e.g. browser tests allow async-unsafe
    # calls); only what drf-spectacular says matters here.
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("check", "--deploy", stdout=out, stderr=err)
    except SystemCheckError as error:
        err.write(str(error))
    assert "drf_spectacular" not in out.getvalue() + err.getvalue()
