import pytest
from django.urls import reverse

from billing import entitlements
from credits import services as credit_services
from projects.generator import generate
from projects.models import AiModel, Generation, Project
from teams import api_keys
from teams.models import AuditEvent
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db


def test_the_generator_is_deterministic_and_model_specific():
    first = generate(model="gpt-4", prompt="Summarise churn")
    assert first == generate(model="gpt-4", prompt="Summarise churn")
    assert first != generate(model="gpt-4o-mini", prompt="Summarise churn")
    assert first.tokens > 0
    image = generate(model="image", prompt="A logo")
    assert image.text.startswith("<svg")


def test_a_member_creates_edits_and_sees_a_project(client_for, org, member):
    client = client_for(member)
    response = client.post(
        reverse("project_create", args=[org.slug]), {"name": "Forecast", "description": "Q3"}
    )
    project = Project.objects.get()
    assert response.url == project.get_absolute_url()
    assert project.created_by == member
    client.post(
        reverse("project_edit", args=[org.slug, project.code]), {"name": "Forecast v2", "description": ""}
    )
    project.refresh_from_db()
    assert project.name == "Forecast v2"
    assert b"Forecast v2" in client.get(reverse("project_list", args=[org.slug])).content


def test_a_blank_name_is_refused(client_for, org, member):
    response = client_for(member).post(reverse("project_create", args=[org.slug]), {"name": " "})
    assert response.status_code == 200
    assert not Project.objects.exists()


def test_only_admins_delete_projects(client_for, org, member, admin):
    project = ProjectFactory(organization=org)
    url = reverse("project_delete", args=[org.slug, project.code])
    assert client_for(member).post(url).status_code == 403
    client_for(admin).post(url)
    assert not Project.objects.exists()
    assert AuditEvent.objects.filter(action="project.deleted").exists()


def test_generate_stores_the_result_and_the_model(client_for, org, member):
    project = ProjectFactory(organization=org)
    client = client_for(member)
    response = client.post(
        reverse("generation_create", args=[org.slug, project.code]),
        {"prompt": "A calm logo", "model": "image"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    generation = Generation.objects.get()
    assert generation.model == AiModel.IMAGE
    assert generation.result == generate(model="image", prompt="A calm logo").text
    assert b'hx-swap-oob="afterbegin:#generations"' in response.content
    assert b"<html" not in response.content


def test_generate_without_a_prompt_is_refused(client_for, org, member):
    project = ProjectFactory(organization=org)
    response = client_for(member).post(
        reverse("generation_create", args=[org.slug, project.code]), {"prompt": "", "model": "gpt-4"}
    )
    assert response.status_code == 400
    assert not Generation.objects.exists()


def test_the_project_list_runs_a_fixed_number_of_queries(
    client_for, org, member, django_assert_max_num_queries
):
    ProjectFactory.create_batch(15, organization=org)
    client = client_for(member)
    url = reverse("project_list", args=[org.slug])
    client.get(url)  # entitlements cached, as they are after an organization's first page
    # session, user, membership x2, banner, organizations, project count x2, projects
    with django_assert_max_num_queries(9):
        assert client.get(url).status_code == 200
    ProjectFactory.create_batch(15, organization=org)
    with django_assert_max_num_queries(9):
        assert client.get(url).status_code == 200


# --- API ----------------------------------------------------------------------------------


@pytest.fixture
def key_client(api_client, org, owner):
    _, secret = api_keys.api_key_create(organization=org, actor=owner, name="server")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return api_client


def test_the_api_creates_lists_updates_and_deletes_with_a_key(key_client, org):
    created = key_client.post("/api/v1/projects/", {"name": "From CI"}, format="json")
    assert created.status_code == 201
    code = created.json()["id"]
    assert [p["name"] for p in key_client.get("/api/v1/projects/").json()["data"]] == ["From CI"]
    patched = key_client.patch(f"/api/v1/projects/{code}/", {"name": "Renamed"}, format="json")
    assert patched.json()["name"] == "Renamed"
    assert key_client.delete(f"/api/v1/projects/{code}/").status_code == 204
    assert not Project.objects.exists()
    event = AuditEvent.objects.get(action="project.created")
    assert event.actor is None and event.actor_api_key is not None


def test_the_api_generates(key_client, org):
    project = ProjectFactory(organization=org)
    response = key_client.post(
        f"/api/v1/projects/{project.code}/generations/",
        {"prompt": "Hi", "model": "gpt-4"},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["result"] == generate(model="gpt-4", prompt="Hi").text
    assert len(key_client.get(f"/api/v1/projects/{project.code}/generations/").json()["data"]) == 1


def test_it_answers_a_generation_with_the_quota_and_the_balance_left(
    key_client, org, settings, django_capture_on_commit_callbacks
):
    settings.CREDITS_WELCOME_BONUS = 40
    project = ProjectFactory(organization=org)
    with django_capture_on_commit_callbacks(execute=True):
        response = key_client.post(
            f"/api/v1/projects/{project.code}/generations/", {"prompt": "Hi"}, format="json"
        )
    assert response.status_code == 201
    body = response.json()
    # The free plan's ten generations a month, one used; nothing charged to the 40 credits.
    assert {k: body["quota"][k] for k in ("limit", "used", "remaining", "unlimited")} == {
        "limit": 10,
        "used": 1,
        "remaining": 9,
        "unlimited": False,
    }
    assert body["quota"]["period_end"]
    assert body["credits"] == {"balance": 40, "charged": 0}


def test_it_answers_a_generation_paid_with_credits_with_the_balance_after_paying(
    key_client, org, settings, django_capture_on_commit_callbacks
):
    settings.CREDITS_WELCOME_BONUS = 0
    assert entitlements.consume(org, "ai_generations", 10, idempotency_key="fill").allowed
    credit_services.credits_grant(organization=org, amount=1_000, source="purchase", idempotency_key="fund")
    project = ProjectFactory(organization=org)
    with django_capture_on_commit_callbacks(execute=True):
        response = key_client.post(
            f"/api/v1/projects/{project.code}/generations/",
            {"prompt": "Hi"},
            format="json",
            HTTP_X_CONFIRM_CREDITS="true",
        )
    assert response.status_code == 201
    body = response.json()
    assert body["quota"]["remaining"] == 0
    charged = body["credits"]["charged"]
    assert charged > 0
    balance = credit_services.credit_account_for(organization=org).balance
    assert body["credits"]["balance"] == balance == 1_000 - charged


def test_the_api_explains_invalid_input_with_stable_codes(key_client, org):
    response = key_client.post("/api/v1/projects/", {"name": ""}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_request"
    assert "name" in body["fields"]
    project = ProjectFactory(organization=org)
    response = key_client.post(
        f"/api/v1/projects/{project.code}/generations/",
        {"prompt": "x", "model": "gpt-9"},
        format="json",
    )
    assert response.status_code == 400
    assert "model" in response.json()["fields"]
    assert not Generation.objects.exists()


def test_a_session_names_its_organization(api_client, org, member):
    ProjectFactory(organization=org, name="Mine")
    api_client.force_authenticate(member)
    assert api_client.get("/api/v1/projects/").status_code == 404
    response = api_client.get("/api/v1/projects/", HTTP_X_TALLY_ORG=org.slug)
    assert [p["name"] for p in response.json()["data"]] == ["Mine"]


def test_the_openapi_schema_is_published(client):
    response = client.get("/api/v1/schema/")
    assert response.status_code == 200
    assert b"/api/v1/projects/" in response.content
