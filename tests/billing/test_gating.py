import pytest
from django.http import HttpResponse
from django.template import Context, Template
from django.urls import include, path, reverse
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import entitlements, metering
from billing.entitlements.gating import requires_feature, requires_feature_permission
from billing.models import Plan, PlanEntitlement
from projects.models import Generation, Project
from teams import api_keys
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db


@requires_feature("sso")
def sso_settings(request, org_slug):
    return HttpResponse("sso settings")


class SsoApi(APIView):
    permission_classes = [requires_feature_permission("sso")]

    def get(self, request):
        return Response({"ok": True})


urlpatterns = [
    path("o/<slug:org_slug>/sso/", sso_settings),
    path("api/sso/", SsoApi.as_view()),
    path("", include("config.urls")),
]


def to_pro(org):
    entitlements.subscription_set(organization=org, plan=Plan.objects.get(key="pro_monthly"), status="active")
    entitlements.invalidate(org)


def test_project_creation_stops_at_the_limit_with_an_upgrade_prompt(client_for, org, member):
    ProjectFactory.create_batch(2, organization=org)
    client = client_for(member)
    response = client.post(reverse("project_create", args=[org.slug]), {"name": "Third"})
    assert response.status_code == 402
    assert b'data-testid="upgrade-prompt"' in response.content
    assert b"limit of 2 projects" in response.content
    assert b"/pricing/#" in response.content
    assert Project.objects.count() == 2
    # The form itself is not offered at the limit either.
    assert client.get(reverse("project_create", args=[org.slug])).status_code == 402


def test_the_service_refuses_past_the_limit_too(org, owner):
    ProjectFactory.create_batch(2, organization=org)
    from projects import services as project_services

    with pytest.raises(project_services.ServiceError) as error:
        project_services.project_create(organization=org, name="Third", actor=owner)
    assert error.value.code == "limit_reached"


def test_generate_counts_against_the_quota_and_shows_what_is_left(
    client_for, org, member, django_capture_on_commit_callbacks
):
    project = ProjectFactory(organization=org)
    client = client_for(member)
    page = client.get(project.get_absolute_url())
    assert b"10 of 10 generations left" in page.content
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("generation_create", args=[org.slug, project.code]),
            {"prompt": "Hi", "model": "gpt-4", "idempotency_key": "one"},
        )
    assert b"9 of 10 generations left" in client.get(project.get_absolute_url()).content


def test_a_resubmitted_generate_form_generates_once(
    client_for, org, member, django_capture_on_commit_callbacks
):
    project = ProjectFactory(organization=org)
    client = client_for(member)
    url = reverse("generation_create", args=[org.slug, project.code])
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            client.post(url, {"prompt": "Hi", "model": "gpt-4", "idempotency_key": "same"})
    assert Generation.objects.count() == 1
    assert entitlements.check(org, "ai_generations").used == 1


def test_generate_past_a_blocking_quota_shows_the_prompt_in_place(client_for, org, member):
    project = ProjectFactory(organization=org)
    # Free pays past its quota with credits; a plan that blocks instead shows the upgrade.
    PlanEntitlement.objects.filter(plan__key="free", feature__key="ai_generations").update(overage="block")
    entitlements.invalidate_catalog()
    entitlements.consume(org, "ai_generations", 10, idempotency_key="fill")
    response = client_for(member).post(
        reverse("generation_create", args=[org.slug, project.code]),
        {"prompt": "Hi", "model": "gpt-4"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200  # htmx swaps it in
    assert b'data-reason="quota_exceeded"' in response.content
    assert b"You have used all 10 generations" in response.content
    assert not Generation.objects.exists()


def test_warnings_show_at_80_percent(client_for, org, member, django_capture_on_commit_callbacks):
    project = ProjectFactory(organization=org)
    with django_capture_on_commit_callbacks(execute=True):
        entitlements.consume(org, "ai_generations", 8, idempotency_key="fill")
    page = client_for(member).get(project.get_absolute_url())
    assert b"You have used 80% of your generations" in page.content
    # The nav shows what is left on every page of the organization, as a badge beside Usage.
    dashboard = client_for(member).get(reverse("dashboard", args=[org.slug])).content.decode()
    assert 'title="2 ai generations left this period" data-testid="low-quota">2 left' in dashboard


@pytest.fixture
def key_client(api_client, org, owner):
    _, secret = api_keys.api_key_create(organization=org, actor=owner, name="server")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return api_client


def _flush(capture):
    # Counted in Redis, written by the periodic flush; the cached count moves on its commit.
    with capture(execute=True):
        metering.api_calls_flush()


def test_api_calls_are_counted_and_refused_past_the_quota(
    key_client, org, django_capture_on_commit_callbacks
):
    key_client.get("/api/v1/projects/")
    _flush(django_capture_on_commit_callbacks)
    assert entitlements.check(org, "api_calls").used == 1
    with django_capture_on_commit_callbacks(execute=True):
        entitlements.consume(org, "api_calls", 999, idempotency_key="fill")
    response = key_client.get("/api/v1/projects/")
    assert response.status_code == 402
    body = response.json()
    assert (body["code"], body["feature"], body["limit"], body["used"]) == (
        "quota_exceeded",
        "api_calls",
        1000,
        1000,
    )
    assert body["upgrade"]["url"].startswith("/pricing/#")


def test_a_retried_api_call_with_its_key_counts_once(key_client, org, django_capture_on_commit_callbacks):
    for _ in range(3):
        key_client.post("/api/v1/projects/", {"name": "Once"}, format="json", HTTP_IDEMPOTENCY_KEY="req-1")
    _flush(django_capture_on_commit_callbacks)
    assert entitlements.check(org, "api_calls").used == 1


def test_a_repeated_api_generation_is_generated_once(key_client, org):
    project = ProjectFactory(organization=org)
    url = f"/api/v1/projects/{project.code}/generations/"
    first = key_client.post(url, {"prompt": "Hi"}, format="json", HTTP_IDEMPOTENCY_KEY="g-1")
    again = key_client.post(url, {"prompt": "Hi"}, format="json", HTTP_IDEMPOTENCY_KEY="g-1")
    assert first.json()["id"] == again.json()["id"]
    assert Generation.objects.count() == 1


@pytest.mark.urls("tests.billing.test_gating")
def test_the_view_decorator_gates_a_page(client_for, org, member):
    client = client_for(member)
    response = client.get(f"/o/{org.slug}/sso/")
    assert response.status_code == 402
    assert b"Single sign-on is not included in your plan" in response.content
    response = client.get(f"/o/{org.slug}/sso/", HTTP_HX_REQUEST="true")
    assert b"<html" not in response.content and b"upgrade-prompt" in response.content
    entitlements.subscription_set(
        organization=org, plan=Plan.objects.get(key="platform_monthly"), status="active"
    )
    entitlements.invalidate(org)
    assert client.get(f"/o/{org.slug}/sso/").content == b"sso settings"


@pytest.mark.urls("tests.billing.test_gating")
def test_the_drf_permission_gates_an_endpoint(key_client, org):
    response = key_client.get("/api/sso/")
    assert response.status_code == 402
    assert response.json()["code"] == "not_included"


def test_the_template_tag_gates_a_button(org):
    template = Template(
        '{% load billing %}{% entitlement org "priority_support" as ps %}'
        "{% if ps.allowed %}chat{% else %}upgrade{% endif %}"
    )
    assert template.render(Context({"org": org})) == "upgrade"
    to_pro(org)
    assert template.render(Context({"org": org})) == "chat"


def test_the_money_filter_reads_like_a_price():
    template = Template("{% load billing %}{{ a|money }} {{ b|money }} {{ c|money:'eur' }}")
    assert template.render(Context({"a": 4900, "b": 1250, "c": 100050})) == "$49 $12.50 €1,000.50"
