import uuid
from collections.abc import Mapping

from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import entitlements
from billing.entitlements.gating import raise_unless_allowed
from common.errors import ServiceError
from projects.generator import generate
from projects.models import AiModel, Generation, Project
from teams.models import ApiKey, Organization, User
from teams.services import audit_record


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ServiceError("name_required", "Give the project a name.", field="name")
    if len(name) > 100:
        raise ServiceError("name_too_long", "Keep the name under 100 characters.", field="name")
    return name


def project_create(
    *,
    organization: Organization,
    name: str,
    description: str = "",
    actor: User | None = None,
    api_key: ApiKey | None = None,
) -> Project:
    name = _clean_name(name)
    with transaction.atomic():
        # Lock the organization so that two requests cannot both take the last project slot.
        Organization.objects.select_for_update().filter(pk=organization.pk).first()
        raise_unless_allowed(entitlements.check(organization, "projects", 1))
        project = Project.objects.create(
            organization=organization,
            name=name,
            description=description.strip(),
            created_by=actor,
        )
        audit_record(
            organization=organization,
            action="project.created",
            actor=actor,
            api_key=api_key,
            target=project.name,
            data={"project": str(project.code)},
        )
    return project


def project_update(*, project: Project, name: str | None = None, description: str | None = None) -> Project:
    if name is not None:
        project.name = _clean_name(name)
    if description is not None:
        project.description = description.strip()
    project.updated_at = timezone.now()
    project.save(update_fields=["name", "description", "updated_at"])
    return project


def project_delete(*, project: Project, actor: User | None = None, api_key: ApiKey | None = None) -> None:
    with transaction.atomic():
        audit_record(
            organization=project.organization,
            action="project.deleted",
            actor=actor,
            api_key=api_key,
            target=project.name,
            data={"project": str(project.code)},
        )
        project.delete()


def generation_create(
    *,
    project: Project,
    prompt: str,
    model: str = AiModel.GPT_4,
    actor: User | None = None,
    idempotency_key: str | None = None,
    paid_with_credits: bool = False,
) -> Generation:
    """Run the (simulated) model once, counted against the `ai_generations` quota, unless the
    caller has already charged credits for it (the quota was used up and the plan's overage
    policy is credits).

    A retry with the same key returns the first generation and is counted once.
    """
    key = idempotency_key or uuid.uuid4().hex
    existing = Generation.objects.filter(
        organization_id=project.organization_id, project=project, idempotency_key=key
    ).first()
    if existing is not None:
        return existing
    prompt = (prompt or "").strip()
    if not prompt:
        raise ServiceError("prompt_required", "Write a prompt to generate from.", field="prompt")
    if len(prompt) > 4000:
        raise ServiceError("prompt_too_long", "Keep the prompt under 4,000 characters.", field="prompt")
    if model not in AiModel.values:
        raise ServiceError("unknown_model", f"Choose one of: {', '.join(AiModel.values)}.", field="model")
    output = generate(model=model, prompt=prompt)
    try:
        with transaction.atomic():
            if not paid_with_credits:
                raise_unless_allowed(
                    entitlements.consume(
                        project.organization,
                        "ai_generations",
                        1,
                        idempotency_key=f"generation:{project.pk}:{key}",
                    )
                )
            return Generation.objects.create(
                organization_id=project.organization_id,
                project=project,
                model=model,
                prompt=prompt,
                result=output.text,
                tokens=output.tokens,
                created_by=actor,
                idempotency_key=key,
            )
    except IntegrityError:
        # The same key raced in from another request, which won: answer with its result.
        return Generation.objects.get(
            organization_id=project.organization_id, project=project, idempotency_key=key
        )


# --- Paying a generation with credits --------------------------------------------------------
# A generation is covered by the plan's `ai_generations` quota. Once that is used up, a plan
# whose overage policy is `credits` pays with credits, priced by model (the model name is the
# credit action): per 1K tokens for text, per picture for images. The hold covers the prompt
# plus the longest answer a model gives; afterwards the tokens really used are charged.
MAX_OUTPUT_TOKENS = 512


def _generation_input(data) -> Mapping:
    # The body is read before any validation: a JSON body that is not an object prices nothing,
    # and the view's own validation refuses it.
    return data if isinstance(data, Mapping) else {}


def generation_credit_action(*, organization: Organization, data) -> str | None:
    """The credit action of a generate request, or None when there is nothing to charge: the
    quota covers it, the plan blocks it (the view shows why), or the input is bad."""
    data = _generation_input(data)
    model = data.get("model") or AiModel.GPT_4
    if model not in AiModel.values or not str(data.get("prompt") or "").strip():
        return None
    quota = entitlements.check(organization, "ai_generations", 1)
    return model if quota.payable_with_credits else None


def generation_credit_units(*, data) -> int:
    data = _generation_input(data)
    if data.get("model") == AiModel.IMAGE:
        return 1
    return (len(str(data.get("prompt") or "").split()) * 4 + 2) // 3 + MAX_OUTPUT_TOKENS


def generation_credit_units_used(generation: Generation) -> int:
    return 1 if generation.is_image else generation.tokens
