from collections.abc import Mapping

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing import entitlements
from billing.gating import EntitlementError, upgrade_response
from billing.models import Overage
from common.errors import ServiceError
from credits.decorators import charges_credits, credits_used
from projects import selectors, services
from projects.forms import GenerationForm, ProjectForm
from projects.models import AiModel, Project
from teams.access import get_org_for_api, get_org_for_user
from teams.models import Role
from teams.selectors import members_of


def _project_for(request, org_slug: str, code, *, min_role: str = Role.MEMBER):
    organization, membership = get_org_for_user(request, org_slug, min_role=min_role)
    project = get_object_or_404(Project, organization=organization, code=code)
    return organization, membership, project


@login_required
@require_GET
def dashboard(request, org_slug: str):
    organization, membership = get_org_for_user(request, org_slug)
    return render(
        request,
        "projects/dashboard.html",
        {
            "organization": organization,
            "membership": membership,
            "projects": selectors.recent_projects_of(organization),
            "project_count": selectors.projects_of(organization).count(),
            "member_count": members_of(organization).count(),
            "usage": entitlements.entitlements_for(organization),
        },
    )


@login_required
@require_GET
def project_list(request, org_slug: str):
    organization, membership = get_org_for_user(request, org_slug)
    return render(
        request,
        "projects/project_list.html",
        {
            "organization": organization,
            "membership": membership,
            "projects": selectors.projects_of(organization),
            "quota": entitlements.check(organization, "projects", 0),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def project_create(request, org_slug: str):
    organization, membership = get_org_for_user(request, org_slug)
    decision = entitlements.check(organization, "projects", 1)
    if not decision.allowed:
        return upgrade_response(request, organization, EntitlementError(decision))
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            project = services.project_create(
                organization=organization, actor=request.user, **form.cleaned_data
            )
        except EntitlementError as error:
            return upgrade_response(request, organization, error)
        except ServiceError as error:
            form.add_error(error.field, error.message)
        else:
            messages.success(request, f"Project “{project.name}” created.")
            return redirect(project)
    return render(
        request,
        "projects/project_form.html",
        {"organization": organization, "membership": membership, "form": form, "quota": decision},
    )


@login_required
@require_GET
def project_detail(request, org_slug: str, code):
    organization, membership, project = _project_for(request, org_slug, code)
    return render(
        request,
        "projects/project_detail.html",
        {
            "organization": organization,
            "membership": membership,
            "project": project,
            "form": GenerationForm(),
            "generations": selectors.generations_of(project),
            "quota": entitlements.check(organization, "ai_generations", 0),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def project_edit(request, org_slug: str, code):
    organization, membership, project = _project_for(request, org_slug, code)
    form = ProjectForm(
        request.POST or None,
        initial={"name": project.name, "description": project.description},
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.project_update(project=project, **form.cleaned_data)
        except ServiceError as error:
            form.add_error(error.field, error.message)
        else:
            messages.success(request, "Project saved.")
            return redirect(project)
    return render(
        request,
        "projects/project_form.html",
        {"organization": organization, "membership": membership, "form": form, "project": project},
    )


@login_required
@require_POST
def project_delete(request, org_slug: str, code):
    organization, _, project = _project_for(request, org_slug, code, min_role=Role.ADMIN)
    services.project_delete(project=project, actor=request.user)
    messages.success(request, f"Project “{project.name}” deleted.")
    return redirect("project_list", organization.slug)


# A generation is covered by the plan's `ai_generations` quota. Once that is used up, a plan
# whose overage policy is `credits` pays with credits, priced by model (the model name is the
# credit action): per 1K tokens for text, per picture for images. The hold covers the prompt
# plus the longest answer a model gives; afterwards the tokens really used are charged.
MAX_OUTPUT_TOKENS = 512


def _generation_input(request):
    # The body is read here before any validation: a JSON body that is not an object
    # prices nothing, and the view's own validation refuses it.
    data = request.data if hasattr(request, "data") else request.POST
    return data if isinstance(data, Mapping) else {}


def generation_action(request) -> str | None:
    """The credit action of a generate request, or None when there is nothing to charge: the
    quota covers it, the plan blocks it (the view shows why), or the input is bad."""
    data = _generation_input(request)
    model = data.get("model") or AiModel.GPT_4
    if model not in AiModel.values or not str(data.get("prompt") or "").strip():
        return None
    if hasattr(request, "data"):
        organization = get_org_for_api(request)
    else:
        organization, _ = get_org_for_user(request, request.resolver_match.kwargs["org_slug"])
    quota = entitlements.check(organization, "ai_generations", 1)
    pays_with_credits = (
        quota.reason == entitlements.Reason.QUOTA_EXCEEDED and quota.overage == Overage.CREDITS
    )
    return model if pays_with_credits else None


def generation_units(request) -> int:
    data = _generation_input(request)
    if data.get("model") == AiModel.IMAGE:
        return 1
    return (len(str(data.get("prompt") or "").split()) * 4 + 2) // 3 + MAX_OUTPUT_TOKENS


def generation_units_used(generation) -> int:
    return 1 if generation.is_image else generation.tokens


@login_required
@require_POST
@charges_credits(generation_action, quantity=generation_units)
def generation_create(request, org_slug: str, code):
    organization, membership, project = _project_for(request, org_slug, code)
    form = GenerationForm(request.POST)
    generation = blocked = None
    if form.is_valid():
        try:
            generation = services.generation_create(
                project=project,
                actor=request.user,
                paid_with_credits=hasattr(request, "credit_charge"),
                **form.cleaned_data,
            )
        except EntitlementError as error:
            blocked = error
        except ServiceError as error:
            form.add_error(error.field, error.message)
    credits_used(request, quantity=generation_units_used(generation) if generation else 0)
    context = {
        "organization": organization,
        "membership": membership,
        "project": project,
        "form": GenerationForm(initial={"model": form.data.get("model")}) if generation else form,
        "new_generation": generation,
        "blocked": blocked,
        "quota": entitlements.check(organization, "ai_generations", 0),
    }
    status = 200 if generation else (402 if blocked else 400)
    if request.htmx:
        # htmx swaps only successful answers; a refusal here is content to show, not a failure.
        return render(request, "projects/project_detail.html#generate", context)
    if generation is None:
        context["generations"] = selectors.generations_of(project)
        return render(request, "projects/project_detail.html", context, status=status)
    return redirect(project)
