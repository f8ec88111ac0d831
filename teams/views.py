from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from common.errors import ServiceError
from teams import api_keys as api_key_services
from teams import selectors, services, throttle
from teams.access import client_ip, get_org_for_user
from teams.forms import (
    ApiKeyForm,
    InvitationForm,
    LoginForm,
    OrganizationDeleteForm,
    OrganizationForm,
    OrganizationSettingsForm,
    RoleForm,
    SignupForm,
    ThrottledPasswordResetForm,
    TransferForm,
)
from teams.models import ApiKey, Invitation, Membership, Role
from teams.twofactor import two_factor_on
from teams.views_twofactor import sign_in_pending


def _safe_next(request, fallback: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return fallback


@require_GET
def landing(request):
    return render(request, "teams/landing.html")


@login_required
@require_GET
def home(request):
    """Where a signed-in person lands: their first organization, or a form to make one."""
    organization = selectors.organizations_for_user(request.user).first()
    if organization is None:
        return redirect("organization_create")
    return redirect(organization)


@require_http_methods(["GET", "POST"])
def signup(request):
    if request.user.is_authenticated:
        return redirect(_safe_next(request, reverse("home")))
    form = SignupForm(request.POST or None, initial={"email": request.GET.get("email", "")})
    refused = ""
    if request.method == "POST":
        account = request.POST.get("email", "")
        refused = throttle.throttle_hit(throttle.SIGNUP, account=account, address=client_ip(request))
    if refused:
        form.is_valid()
        form.add_error(None, refused)
        context = {"form": form, "next": _safe_next(request, "")}
        return render(request, "registration/signup.html", context, status=429)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.user_create(
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password"],
                name=form.cleaned_data["name"],
            )
        except ServiceError as error:
            form.add_error(error.field, error.message)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, "Welcome to Tally. This is your personal workspace.")
            return redirect(_safe_next(request, reverse("home")))
    return render(request, "registration/signup.html", {"form": form, "next": _safe_next(request, "")})


@login_required
@require_http_methods(["GET", "POST"])
def organization_create(request):
    form = OrganizationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            organization = services.organization_create(
                owner=request.user, name=form.cleaned_data["name"], ip_address=client_ip(request)
            )
        except ServiceError as error:
            form.add_error(error.field, error.message)
        else:
            messages.success(request, f"{organization.name} is ready. Invite your team.")
            return redirect("members", organization.slug)
    return render(request, "teams/organization_create.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
def organization_settings(request, org_slug: str):
    organization, membership = get_org_for_user(request, org_slug, min_role=Role.ADMIN)
    form = OrganizationSettingsForm(
        request.POST or None,
        initial={"name": organization.name, "billing_email": organization.billing_email},
    )
    if request.method == "POST" and form.is_valid():
        services.organization_update(
            organization=organization,
            actor=request.user,
            name=form.cleaned_data["name"],
            billing_email=form.cleaned_data["billing_email"],
            ip_address=client_ip(request),
        )
        messages.success(request, "Settings saved.")
        return redirect("organization_settings", organization.slug)
    return render(
        request,
        "teams/settings.html",
        {
            "organization": organization,
            "membership": membership,
            "form": form,
            "events": selectors.recent_audit_events(organization, limit=30),
        },
    )


@login_required
@require_POST
def organization_delete(request, org_slug: str):
    organization, membership = get_org_for_user(request, org_slug, min_role=Role.OWNER)
    form = OrganizationDeleteForm(request.POST)
    try:
        services.organization_delete(
            organization=organization,
            actor=membership,
            confirm=form.cleaned_data["confirm"] if form.is_valid() else "",
            ip_address=client_ip(request),
        )
    except ServiceError as error:
        messages.error(request, error.message)
        return redirect("organization_settings", org_slug)
    messages.success(request, f"{organization.name} was deleted; its subscription is canceled.")
    return redirect("home")


# --- Members --------------------------------------------------------------------------------


def _members_context(organization, membership, invite_form=None, refusal=None):
    return {
        "organization": organization,
        "membership": membership,
        "members": selectors.members_of(organization),
        "invitations": selectors.pending_invitations_of(organization),
        "invite_form": invite_form or InvitationForm(),
        "roles": Role.choices,
        # A refusal from another app's membership guard (the seat limit) may carry an upgrade.
        "refusal": refusal,
    }


@login_required
@require_GET
def members(request, org_slug: str):
    organization, membership = get_org_for_user(request, org_slug)
    return render(request, "teams/members.html", _members_context(organization, membership))


@login_required
@require_POST
def invitation_create(request, org_slug: str):
    organization, membership = get_org_for_user(request, org_slug, min_role=Role.ADMIN)
    form = InvitationForm(request.POST)
    refusal = None
    if form.is_valid():
        try:
            invitation = services.invitation_create(
                organization=organization,
                actor=request.user,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                ip_address=client_ip(request),
            )
        except ServiceError as error:
            form.add_error(error.field, error.message)
            refusal = error
        else:
            messages.success(request, f"Invitation sent to {invitation.email}.")
            form = None
    context = _members_context(organization, membership, form, refusal)
    if request.htmx:
        return render(request, "teams/members.html#invitations", context)
    if form is None:
        return redirect("members", organization.slug)
    return render(request, "teams/members.html", context, status=400)


def _invitation_action(request, org_slug: str, code, action, success: str):
    organization, membership = get_org_for_user(request, org_slug, min_role=Role.ADMIN)
    invitation = get_object_or_404(Invitation, organization=organization, code=code)
    try:
        action(invitation=invitation, actor=request.user, ip_address=client_ip(request))
    except ServiceError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, success.format(email=invitation.email))
    context = _members_context(organization, membership)
    if request.htmx:
        return render(request, "teams/members.html#invitations", context)
    return redirect("members", organization.slug)


@login_required
@require_POST
def invitation_resend(request, org_slug: str, code):
    return _invitation_action(
        request,
        org_slug,
        code,
        services.invitation_resend,
        "Invitation sent again to {email}, with a new link.",
    )


@login_required
@require_POST
def invitation_revoke(request, org_slug: str, code):
    return _invitation_action(
        request, org_slug, code, services.invitation_revoke, "Invitation to {email} withdrawn."
    )


@require_http_methods(["GET", "POST"])
def invitation_accept(request, token: str):
    invitation = Invitation.from_token(token)
    if invitation is None:
        return render(request, "teams/invitation.html", {"invalid": True}, status=404)
    problem = None
    user = request.user if request.user.is_authenticated else None
    try:
        services.invitation_check(invitation=invitation, user=user)
    except ServiceError as error:
        problem = error
    if request.method == "POST" and request.user.is_authenticated and problem is None:
        try:
            services.invitation_accept(
                invitation=invitation, user=request.user, ip_address=client_ip(request)
            )
        except ServiceError as error:
            problem = error
        else:
            messages.success(request, f"You joined {invitation.organization.name}.")
            return redirect(invitation.organization)
    return render(
        request,
        "teams/invitation.html",
        {"invitation": invitation, "problem": problem},
        status=problem.status if problem else 200,
    )


def _membership_or_404(organization, code) -> Membership:
    return get_object_or_404(
        Membership.objects.select_related("user", "organization"),
        organization=organization,
        code=code,
    )


@login_required
@require_POST
def membership_role(request, org_slug: str, code):
    organization, actor = get_org_for_user(request, org_slug, min_role=Role.ADMIN)
    target = _membership_or_404(organization, code)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the listed roles.")
    else:
        try:
            services.membership_change_role(
                membership=target,
                actor=actor,
                role=form.cleaned_data["role"],
                ip_address=client_ip(request),
            )
        except ServiceError as error:
            messages.error(request, error.message)
        else:
            messages.success(request, f"{target.user.email} is now {target.get_role_display()}.")
    if request.htmx:
        return HttpResponseClientRedirect(reverse("members", args=[organization.slug]))
    return redirect("members", organization.slug)


@login_required
@require_POST
def membership_remove(request, org_slug: str, code):
    organization, actor = get_org_for_user(request, org_slug, min_role=Role.ADMIN)
    target = _membership_or_404(organization, code)
    try:
        services.membership_remove(membership=target, actor=actor, ip_address=client_ip(request))
    except ServiceError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"{target.user.email} was removed.")
    return redirect("members", organization.slug)


@login_required
@require_POST
def organization_leave(request, org_slug: str):
    organization, membership = get_org_for_user(request, org_slug)
    try:
        services.membership_remove(membership=membership, actor=membership, ip_address=client_ip(request))
    except ServiceError as error:
        messages.error(request, error.message)
        return redirect("members", organization.slug)
    messages.success(request, f"You left {organization.name}.")
    return redirect("home")


@login_required
@require_POST
def ownership_transfer(request, org_slug: str):
    organization, actor = get_org_for_user(request, org_slug, min_role=Role.OWNER)
    form = TransferForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose the member who will become owner.")
        return redirect("members", organization.slug)
    target = _membership_or_404(organization, form.cleaned_data["member"])
    try:
        services.ownership_transfer(
            organization=organization, actor=actor, to=target, ip_address=client_ip(request)
        )
    except ServiceError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"{target.user.email} now owns {organization.name}.")
    return redirect("members", organization.slug)


# --- API keys -------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def api_keys(request, org_slug: str):
    organization, membership = get_org_for_user(request, org_slug, min_role=Role.ADMIN)
    form = ApiKeyForm(request.POST or None)
    created = secret = None
    if request.method == "POST" and form.is_valid():
        try:
            created, secret = api_key_services.api_key_create(
                organization=organization,
                actor=request.user,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                ip_address=client_ip(request),
            )
        except ServiceError as error:
            form.add_error(error.field, error.message)
        else:
            form = ApiKeyForm()
    context = {
        "organization": organization,
        "membership": membership,
        "form": form,
        "created": created,
        "secret": secret,
        "keys": ApiKey.objects.filter(organization=organization).select_related("created_by"),
    }
    # The secret is rendered into this one response and never again, so no redirect here.
    if request.htmx and request.method == "POST":
        return render(request, "teams/api_keys.html#keys", context)
    return render(request, "teams/api_keys.html", context)


@login_required
@require_POST
def api_key_revoke(request, org_slug: str, code):
    organization, _ = get_org_for_user(request, org_slug, min_role=Role.ADMIN)
    key = get_object_or_404(ApiKey, organization=organization, code=code)
    try:
        api_key_services.api_key_revoke(key=key, actor=request.user, ip_address=client_ip(request))
    except ServiceError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Key “{key.name}” revoked. Calls using it now fail.")
    return redirect("api_keys", organization.slug)


class LoginView(auth_views.LoginView):
    """Django's sign-in, answering 429 while the account or address is locked out."""

    authentication_form = LoginForm
    redirect_authenticated_user = True

    def form_valid(self, form):
        user = form.get_user()
        if two_factor_on(user):
            # Not signed in yet: the code is asked for first (teams/views_twofactor.py).
            sign_in_pending(self.request, user, next_url=self.get_success_url())
            return redirect("login_two_factor")
        return super().form_valid(form)

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.throttled:
            response.status_code = 429
        return response


class PasswordResetView(auth_views.PasswordResetView):
    form_class = ThrottledPasswordResetForm

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "request": self.request}

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if any(e.code == "throttled" for e in form.errors.as_data().get("email", [])):
            response.status_code = 429
        return response
