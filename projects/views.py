from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing import entitlements
from billing.entitlements.gating import EntitlementError, upgrade_response
from common.errors import ServiceError
from credits.decorators import charges_credits, credits_used
from projects import selectors, services
from projects.forms import GenerationForm, ProjectForm
from projects.models import Project
from teams.access import get_org_for_user
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
            "quota": entitlements.check(organization, "projects", 0),
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
            "costs": selectors.generation_costs(organization),
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


def generation_action(request) -> str | None:
    """The credit action of a generate form, or None when there is nothing to charge."""
    organization, _ = get_org_for_user(request, request.resolver_match.kwargs["org_slug"])
    return services.generation_credit_action(organization=organization, data=request.POST)


def generation_units(request) -> int:
    return services.generation_credit_units(data=request.POST)


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
    credits_used(request, quantity=services.generation_credit_units_used(generation) if generation else 0)
    context = {
        "organization": organization,
        "membership": membership,
        "project": project,
        "form": GenerationForm(initial={"model": form.data.get("model")}) if generation else form,
        "new_generation": generation,
        "blocked": blocked,
        "quota": entitlements.check(organization, "ai_generations", 0),
        "costs": selectors.generation_costs(organization),
    }
    status = 200 if generation else (402 if blocked else 400)
    if request.htmx:
        # htmx swaps only successful answers; a refusal here is content to show, not a failure.
        return render(request, "projects/project_detail.html#generate", context)
    if generation is None:
        context["generations"] = selectors.generations_of(project)
        return render(request, "projects/project_detail.html", context, status=status)
    return redirect(project)
