"""The OpenAPI schema as the API's contract: component names, the Bearer scheme, the headers
every operation takes or returns, one error component for every error status, and the list
envelope. API views declare only what is particular to them (`extend_schema`)."""

import re

from django.core.validators import RegexValidator
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers

from teams import api_fields
from teams.inputs import MAX_IDEMPOTENCY_KEY


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "teams.auth.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "tly_…",
            "description": "An organization's API key, created on its API keys page: "
            "`Authorization: Bearer <key>`. The key acts for its organization.",
        }


class ErrorOutput(serializers.Serializer):
    """Every error the API answers, whatever its status."""

    code = serializers.CharField(help_text="Stable and machine-readable, e.g. `invalid_request`.")
    message = serializers.CharField(help_text="A sentence for people.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="When the error concerns input: each offending field (dotted path for nested "
        "values, or the header's name) with its messages.",
    )
    # Facts some errors carry: insufficient credits (402), a confirmation asked for (409).
    required = serializers.IntegerField(required=False, help_text="Credits the request needs.")
    balance = serializers.IntegerField(required=False, help_text="The organization's credit balance.")
    available = serializers.IntegerField(required=False, help_text="Credits available (balance - held).")
    estimate = serializers.IntegerField(required=False, help_text="Credits the request would use.")

    class Meta:
        ref_name = "Error"


_ERROR_DESCRIPTIONS = {
    400: "Invalid input: `fields` names each offending field.",
    401: "No credentials, or an unknown or revoked API key.",
    402: "Not enough credits, or the plan's quota is used up.",
    403: "The caller's role does not allow this, or the API key lacks the scope (`insufficient_scope`).",
    404: "No such object, or not visible to the caller.",
    409: "Conflicts with the current state (e.g. an idempotency key reused with other input).",
    413: "The body is over the size limit.",
    415: "The body is not JSON.",
    429: "Too many requests: retry after `Retry-After` seconds.",
    502: "Stripe did not answer as expected; nothing changed, retry shortly.",
    503: "Billing is not set up yet (the catalog is not in Stripe).",
}
# Statuses any operation may answer; those with a body add 413 and 415.
COMMON_ERRORS = (400, 401, 403, 404, 429)
BODY_ERRORS = (413, 415)


def error_responses(*statuses: int) -> dict:
    """The shared error response for each status, for `extend_schema(responses=...)`."""
    return {s: OpenApiResponse(ErrorOutput, description=_ERROR_DESCRIPTIONS[s]) for s in statuses}


# Strings the API accepts, in the regex dialect of JSON Schema: never a NUL (PostgreSQL cannot
# store it), and, where blank is refused, something other than whitespace (DRF strips it first).
NO_NUL = r"^[^\x00]*$"
NOT_BLANK = r"^[^\x00]*[^\s\x00][^\x00]*$"

ORG_HEADER = OpenApiParameter(
    "X-Tally-Org",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description="With a browser session: the slug of the organization to act for. "
    "Ignored with an API key, which acts for its own organization.",
)
RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    OpenApiTypes.INT,
    OpenApiParameter.HEADER,
    response=[429],
    description="Seconds to wait before retrying.",
)
# The RateLimit-* headers of every response, and the scopes each operation needs, are added
# after generation by teams.openapi.add_limits_and_scopes (a postprocessing hook).


def idempotency_key(*, required: bool) -> OpenApiParameter:
    return OpenApiParameter(
        "Idempotency-Key",
        {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY, "pattern": NOT_BLANK},
        OpenApiParameter.HEADER,
        required=required,
        description=f"A key unique to this operation (at most {MAX_IDEMPOTENCY_KEY} characters): "
        "a retry with the same key is answered with the first result (200, "
        "`Idempotent-Replayed: true`) instead of doing it again.",
    )


IDEMPOTENT_REPLAYED = OpenApiParameter(
    "Idempotent-Replayed",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    response=[200],
    enum=["true"],
    description="Present when the answer is the stored result of an earlier request with the "
    "same Idempotency-Key.",
)
CONFIRM_CREDITS = OpenApiParameter(
    "X-Confirm-Credits",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    enum=["true", "false", "1", "0", "yes", "no"],
    description="`true` (or `1`, `yes`) confirms a request that would use more than half of the "
    "available credits; without it such a request is answered 409 `confirmation_required`.",
)


def list_of(serializer_class: type[serializers.Serializer], name: str):
    """The list envelope every list endpoint answers: `{"data": [...], "next_cursor": ...}`."""
    return inline_serializer(
        name,
        {
            "data": serializer_class(many=True),
            "next_cursor": serializers.CharField(
                allow_null=True,
                help_text="Pass as `cursor` for the next page; null on the last page (and on "
                "lists that are not paged).",
            ),
        },
    )


def _link(operation_id: str, description: str) -> dict:
    return {
        "operationId": operation_id,
        "parameters": {"code": "$response.body#/id"},
        "description": description,
    }


# OpenAPI links: what a created object's id opens next (clients and stateful tests follow them).
LINKS = {
    "project_list_post": {
        "GetProject": _link("project_detail_get", "The project just created."),
        "UpdateProject": _link("project_detail_patch", "Rename or describe it."),
        "DeleteProject": _link("project_detail_delete", "Delete it."),
        "ListGenerations": _link("generation_get", "Its generations."),
        "Generate": _link("generation_post", "Generate in it."),
    },
    "reservation_list_post": {
        "ConfirmReservation": _link("reservation_confirm_post", "Charge the hold."),
        "CancelReservation": _link("reservation_cancel_post", "Release the hold."),
    },
}


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's schema with the conventions of our API views."""

    def get_serializer_name(self, serializer, direction):
        # Views nest their serializers as Input/Output/Filters: name them after the view
        # (BalanceApi.Output -> BalanceOutput) so no two components share a name.
        outer, _, inner = type(serializer).__qualname__.rpartition(".")
        if outer and inner in ("Input", "Output", "Filters"):
            return outer.removesuffix("Api") + inner
        return super().get_serializer_name(serializer, direction)

    def _get_serializer_field_meta(self, field, direction):
        meta = super()._get_serializer_field_meta(field, direction)
        if direction == "request" and isinstance(field, serializers.CharField):
            blank_refused = not field.allow_blank
            if blank_refused:
                meta.setdefault("minLength", 1)
            # Fields with their own pattern (slugs) already exclude both.
            if not any(isinstance(v, RegexValidator) for v in field.validators):
                meta.setdefault("pattern", NOT_BLANK if blank_refused and field.trim_whitespace else NO_NUL)
        return meta

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        if direction == "request" and isinstance(serializer, api_fields.Input):
            schema["additionalProperties"] = False  # refused by the server too
        return schema

    def get_tags(self):
        # The part after the version: /api/v1/projects/... -> "projects" (not "v1").
        parts = [p for p in self.path.split("/") if p and not p.startswith("{")]
        return parts[2:3] if parts[:2] == ["api", "v1"] and len(parts) > 2 else super().get_tags()

    def get_operation_id(self):
        # One id per view and method, unique by construction: ProjectDetailApi GET -> project_detail_get.
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(self.view).__name__.removesuffix("Api")).lower()
        return f"{name}_{self.method.lower()}"

    def get_override_parameters(self):
        return [*super().get_override_parameters(), ORG_HEADER, RETRY_AFTER]

    def _get_response_bodies(self, direction="response"):
        # Added here, below extend_schema's overrides, so every operation documents them.
        responses = super()._get_response_bodies(direction)
        statuses = COMMON_ERRORS + (BODY_ERRORS if self.method in ("POST", "PUT", "PATCH") else ())
        for status, response in error_responses(*statuses).items():
            code = str(status)
            if code not in responses:
                responses[code] = self._get_response_for_code(response, code, direction=direction)
        links = LINKS.get(self.get_operation_id())
        if links:
            for code in ("200", "201"):
                if code in responses:
                    responses[code]["links"] = links
        return responses
