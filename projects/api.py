from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from billing.api import QuotaOutput
from billing.entitlements.gating import MetersApiCalls
from credits.decorators import charges_credits, credits_charged, credits_used
from projects import selectors, services
from projects.models import AiModel, Project
from teams import api_fields as fields
from teams.access import get_org_for_api
from teams.api_schema import CONFIRM_CREDITS, error_responses, idempotency_key, list_of
from teams.auth import ApiKeyPrincipal
from teams.inputs import idempotency_key_header
from teams.models import Role


class MeteredApiView(APIView):
    """The sample product's API: the plan's rate limit first, then every call is an `api_calls`
    usage event counted against the quota."""

    permission_classes = [*api_settings.DEFAULT_PERMISSION_CLASSES, MetersApiCalls]


def _actor(request):
    """(user, api_key) for the audit log: one of the two is set."""
    if isinstance(request.user, ApiKeyPrincipal):
        return None, request.user.api_key
    return request.user, None


class ProjectOutput(serializers.Serializer):
    id = serializers.UUIDField(source="code")
    name = serializers.CharField()
    description = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ProjectListApi(MeteredApiView):
    scopes = {"get": "read", "post": "projects:write"}

    class Input(fields.Input):
        name = fields.CharField(max_length=100)
        description = fields.CharField(max_length=2000, required=False, allow_blank=True)

    @extend_schema(responses={200: list_of(ProjectOutput, "ProjectList"), **error_responses(402)})
    def get(self, request):
        organization = get_org_for_api(request)
        projects = selectors.projects_of(organization)[:200]
        return Response({"data": ProjectOutput(projects, many=True).data, "next_cursor": None})

    @extend_schema(request=Input, responses={201: ProjectOutput, **error_responses(402)})
    def post(self, request):
        organization = get_org_for_api(request)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        user, api_key = _actor(request)
        project = services.project_create(
            organization=organization, actor=user, api_key=api_key, **data.validated_data
        )
        return Response(ProjectOutput(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailApi(MeteredApiView):
    scopes = {"get": "read", "patch": "projects:write", "delete": "projects:write"}

    class Input(fields.Input):
        name = fields.CharField(max_length=100, required=False)
        description = fields.CharField(max_length=2000, required=False, allow_blank=True)

    def _project(self, request, code, *, min_role: str = Role.MEMBER) -> Project:
        organization = get_org_for_api(request, min_role=min_role)
        return get_object_or_404(Project, organization=organization, code=code)

    @extend_schema(responses={200: ProjectOutput, **error_responses(402)})
    def get(self, request, code):
        return Response(ProjectOutput(self._project(request, code)).data)

    @extend_schema(request=Input, responses={200: ProjectOutput, **error_responses(402)})
    def patch(self, request, code):
        project = self._project(request, code)
        data = self.Input(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        project = services.project_update(project=project, **data.validated_data)
        return Response(ProjectOutput(project).data)

    @extend_schema(responses={204: None, **error_responses(402)})
    def delete(self, request, code):
        project = self._project(request, code, min_role=Role.ADMIN)
        user, api_key = _actor(request)
        services.project_delete(project=project, actor=user, api_key=api_key)
        return Response(status=status.HTTP_204_NO_CONTENT)


class GenerationOutput(serializers.Serializer):
    id = serializers.UUIDField(source="code")
    model = serializers.CharField()
    prompt = serializers.CharField()
    result = serializers.CharField()
    tokens = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class CreditsLeftOutput(serializers.Serializer):
    balance = serializers.IntegerField(help_text="The credit balance once this generation is paid.")
    charged = serializers.IntegerField(
        help_text="Credits this generation cost (0 when the quota covered it)."
    )


class GenerationCreatedOutput(GenerationOutput):
    quota = QuotaOutput(help_text="The plan's AI generations quota left for this period.")
    credits = CreditsLeftOutput()


def _generation_action(request) -> str | None:
    return services.generation_credit_action(organization=get_org_for_api(request), data=request.data)


def _generation_units(request) -> int:
    return services.generation_credit_units(data=request.data)


class GenerationApi(MeteredApiView):
    scopes = {"get": "read", "post": ("projects:write", "credits:write")}

    class Input(fields.Input):
        prompt = fields.CharField(max_length=4000)
        model = serializers.ChoiceField(choices=AiModel.choices, default=AiModel.GPT_4)
        confirm_credits = fields.BooleanField(
            required=False, help_text="Same as the X-Confirm-Credits header (read by the credit check)."
        )

    def _project(self, request, code) -> Project:
        organization = get_org_for_api(request)
        return get_object_or_404(Project, organization=organization, code=code)

    @extend_schema(responses={200: list_of(GenerationOutput, "GenerationList"), **error_responses(402)})
    def get(self, request, code):
        project = self._project(request, code)
        generations = selectors.generations_of(project, limit=100)
        return Response({"data": GenerationOutput(generations, many=True).data, "next_cursor": None})

    @extend_schema(
        request=Input,
        responses={201: GenerationCreatedOutput, **error_responses(402, 409)},
        parameters=[idempotency_key(required=False), CONFIRM_CREDITS],
    )
    @charges_credits(_generation_action, quantity=_generation_units)
    def post(self, request, code):
        project = self._project(request, code)
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        data.validated_data.pop("confirm_credits", None)
        user, _ = _actor(request)
        generation = services.generation_create(
            project=project,
            actor=user,
            idempotency_key=idempotency_key_header(request, required=False),
            paid_with_credits=hasattr(request, "credit_charge"),
            **data.validated_data,
        )
        credits_used(request, quantity=services.generation_credit_units_used(generation))
        left = selectors.generation_allowance(
            organization=project.organization, credits_charged=credits_charged(request)
        )
        # Read by the output's `quota` (a Decision) and `credits` (balance, charged) fields.
        generation.quota, generation.credits = left.quota, left
        return Response(GenerationCreatedOutput(generation).data, status=status.HTTP_201_CREATED)
