from django.db import transaction
from django.utils import timezone

from projects.generator import generate
from projects.models import AiModel, Generation, Project
from teams.errors import ServiceError
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
    with transaction.atomic():
        project = Project.objects.create(
            organization=organization,
            name=_clean_name(name),
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
    *, project: Project, prompt: str, model: str = AiModel.GPT_4, actor: User | None = None
) -> Generation:
    prompt = (prompt or "").strip()
    if not prompt:
        raise ServiceError("prompt_required", "Write a prompt to generate from.", field="prompt")
    if len(prompt) > 4000:
        raise ServiceError("prompt_too_long", "Keep the prompt under 4,000 characters.", field="prompt")
    if model not in AiModel.values:
        raise ServiceError("unknown_model", f"Choose one of: {', '.join(AiModel.values)}.", field="model")
    output = generate(model=model, prompt=prompt)
    return Generation.objects.create(
        project=project,
        model=model,
        prompt=prompt,
        result=output.text,
        tokens=output.tokens,
        created_by=actor,
    )
