"""API key scopes: chosen at creation, shown on the keys page, enforced on every endpoint."""

import pytest
from django.urls import reverse

from common.errors import ServiceError
from teams import api_keys
from teams.auth import required_scopes
from teams.models import ALL_SCOPES, ApiKey, Scope
from tests.billing.test_usage_ratelimit import _api_routes

pytestmark = pytest.mark.django_db


@pytest.fixture
def client_with(api_client, org, owner):
    def make(*scopes):
        _, secret = api_keys.api_key_create(organization=org, actor=owner, name="s", scopes=scopes)
        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return api_client

    return make


def _refused(response) -> bool:
    return response.status_code == 403 and response.json()["code"] == "insufficient_scope"


def test_it_stores_the_chosen_scopes_in_catalog_order(org, owner):
    key, _ = api_keys.api_key_create(organization=org, actor=owner, name="s", scopes=["usage:write", "read"])
    assert ApiKey.objects.get(pk=key.pk).scopes == ["read", "usage:write"]


@pytest.mark.parametrize("scopes", [[], ["root"]])
def test_it_refuses_no_scope_or_an_unknown_one(org, owner, scopes):
    with pytest.raises(ServiceError) as error:
        api_keys.api_key_create(organization=org, actor=owner, name="s", scopes=scopes)
    assert error.value.field == "scopes"
    assert not ApiKey.objects.exists()


def test_a_key_made_without_choosing_keeps_full_access(org, owner):
    # What the migration gives keys made before scopes existed, and the model's default.
    key = ApiKey.objects.create(organization=org, name="old", prefix="tly_x", digest="0" * 64)
    assert key.scopes == list(ALL_SCOPES)


def test_the_keys_page_creates_a_key_with_the_chosen_scopes_and_shows_them(client_for, org, owner):
    client = client_for(owner)
    url = reverse("api_keys", args=[org.slug])
    page = client.get(url).content.decode()
    assert 'value="credits:write"' in page and 'value="billing:manage"' in page
    response = client.post(url, {"name": "meter", "scopes": ["read", "usage:write"]})
    assert ApiKey.objects.get().scopes == ["read", "usage:write"]
    listing = response.content.decode().split('data-testid="key-scopes"', 1)[1].split("</td>", 1)[0]
    assert "usage:write" in listing and "credits:write" not in listing


def test_the_keys_page_asks_for_a_scope(client_for, org, owner):
    response = client_for(owner).post(reverse("api_keys", args=[org.slug]), {"name": "meter"})
    assert "Choose at least one scope for the key." in response.content.decode()
    assert not ApiKey.objects.exists()


def test_read_reads_and_writes_nothing(client_with):
    client = client_with(Scope.READ)
    assert client.get("/api/v1/credits/balance/").status_code == 200
    assert client.get("/api/v1/projects/").status_code == 200
    response = client.post("/api/v1/credits/consume/", {"action": "x"}, format="json")
    assert _refused(response)
    assert response.json()["message"] == "This request needs the API key scope credits:write."
    assert _refused(client.post("/api/v1/projects/", {"name": "p"}, format="json"))
    assert _refused(client.post("/api/v1/usage/events", {"events": []}, format="json"))
    assert _refused(client.post("/api/v1/billing/checkout", {"plan": "pro_monthly"}, format="json"))


def test_credits_write_consumes_but_does_not_read(client_with):
    client = client_with(Scope.CREDITS_WRITE)
    response = client.post(
        "/api/v1/credits/consume/", {"action": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="k1"
    )
    assert not _refused(response)
    assert _refused(client.get("/api/v1/credits/balance/"))


def test_usage_write_records_events(client_with):
    client = client_with(Scope.USAGE_WRITE)
    events = [{"id": "e1", "meter": "active_users", "properties": {"user_id": "u1"}}]
    response = client.post("/api/v1/usage/events", {"events": events}, format="json")
    assert response.status_code == 200, response.content
    assert _refused(client.post("/api/v1/credits/consume/", {"action": "x"}, format="json"))


def test_projects_write_creates_projects_and_generations_also_need_credits_write(client_with, org):
    client = client_with(Scope.PROJECTS_WRITE)
    response = client.post("/api/v1/projects/", {"name": "Site"}, format="json")
    assert response.status_code == 201, response.content
    code = response.json()["id"]
    response = client.post(f"/api/v1/projects/{code}/generations/", {"prompt": "hi"}, format="json")
    assert response.json()["message"] == "This request needs the API key scope credits:write."


def test_billing_manage_passes_to_checkout_only_with_that_scope(client_with):
    assert _refused(client_with(Scope.READ).post("/api/v1/billing/portal", {}, format="json"))
    response = client_with(Scope.BILLING_MANAGE).post(
        "/api/v1/billing/checkout", {"plan": "pro_monthly"}, format="json"
    )
    # Past the scope check; the test catalog is not in Stripe, which answers next.
    assert response.json()["code"] == "catalog_not_synced"


def test_every_endpoint_names_the_scope_of_every_method():
    from django.urls import resolve

    for path, methods in _api_routes():
        view = resolve(path).func.view_class
        for method in methods:
            needed = required_scopes(view, method)
            assert needed and needed <= set(ALL_SCOPES), (method, path)


def test_a_key_without_the_scope_is_refused_on_every_endpoint(client_with):
    # A key whose only scope fits no endpoint's write, and reads nothing.
    client = client_with(Scope.USAGE_WRITE)
    for path, methods in _api_routes():
        for method in methods:
            if path.startswith("/api/v1/usage/events"):
                continue
            response = getattr(client, method)(path, {}, format="json")
            assert _refused(response), (method, path, response.content)


def test_a_person_is_governed_by_role_not_scopes(client_for, org, member):
    response = client_for(member).get("/api/v1/credits/balance/", HTTP_X_TALLY_ORG=org.slug)
    assert response.status_code == 200
