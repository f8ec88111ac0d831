"""Two-factor pages: the set-up on the account page, the sign-in's second step, the switch in an
organization's settings, and the page a member is sent to when an organization requires it."""

import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from common.errors import ServiceError
from teams import throttle, totp
from teams import twofactor as services
from teams.access import client_ip, get_org_for_user
from teams.forms import (
    TwoFactorCodeForm,
    TwoFactorConfirmForm,
    TwoFactorDisableForm,
    TwoFactorRequirementForm,
)
from teams.models import Membership, Role, TwoFactor, User

PENDING = "two_factor_pending"


def sign_in_pending(request, user, *, next_url: str) -> None:
    """The password was right; the session remembers who is half signed in until the code."""
    request.session[PENDING] = {
        "user": user.pk,
        "backend": user.backend,
        "next": next_url,
        "at": time.time(),
    }


def _pending_user(request) -> tuple[User | None, dict]:
    pending = request.session.get(PENDING) or {}
    if not pending or time.time() - pending.get("at", 0) > settings.TWO_FACTOR_PENDING_SECONDS:
        return None, {}
    return User.objects.filter(pk=pending.get("user"), is_active=True).first(), pending


@require_http_methods(["GET", "POST"])
def login_two_factor(request):
    user, pending = _pending_user(request)
    if user is None:
        request.session.pop(PENDING, None)
        messages.error(request, "Your sign-in timed out; please enter your password again.")
        return redirect("login")
    form = TwoFactorCodeForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        address = client_ip(request)
        refused = throttle.throttle_hit(
            throttle.TWO_FACTOR, account=user.email, address=address, record=False
        )
        kind = "" if refused else services.two_factor_verify(user=user, code=form.cleaned_data["code"])
        if kind:
            request.session.pop(PENDING, None)
            login(request, user, backend=pending["backend"])
            if kind == "recovery":
                left = services.recovery_codes_left(user)
                messages.warning(
                    request,
                    f"You signed in with a recovery code; {left} left. Set up a new phone on the "
                    "two-factor page if you lost yours.",
                )
            return redirect(pending.get("next") or settings.LOGIN_REDIRECT_URL)
        if refused:
            status = 429
        else:
            throttle.throttle_hit(throttle.TWO_FACTOR, account=user.email, address=address)
            refused = "That code is not right, or was used already."
            status = 400
        form.add_error("code", refused)
    return render(request, "registration/login_two_factor.html", {"form": form}, status=status)


def _account_context(request, **extra) -> dict:
    device = TwoFactor.objects.filter(user=request.user).first()
    context = {
        "device": device,
        "confirm_form": TwoFactorConfirmForm(),
        "disable_form": TwoFactorDisableForm(),
    }
    if device and not device.is_on:
        secret = device.secret
        context["secret_grouped"] = totp.grouped(secret)
        context["otpauth_uri"] = totp.provisioning_uri(secret, request.user.email)
    elif device:
        context["codes_left"] = services.recovery_codes_left(request.user)
    return {**context, **extra}


@login_required
@require_GET
def account_two_factor(request):
    return render(request, "teams/two_factor.html", _account_context(request))


@login_required
@require_POST
def two_factor_start(request):
    try:
        services.two_factor_start(user=request.user)
    except ServiceError as error:
        messages.error(request, error.message)
    return redirect("account_two_factor")


@login_required
@require_POST
def two_factor_confirm(request):
    form = TwoFactorConfirmForm(request.POST)
    if form.is_valid():
        try:
            codes = services.two_factor_confirm(user=request.user, code=form.cleaned_data["code"])
        except ServiceError as error:
            form.add_error("code" if error.field else None, error.message)
        else:
            # The recovery codes are in this one response and never again, so no redirect here.
            return render(request, "teams/two_factor.html", _account_context(request, recovery_codes=codes))
    return render(request, "teams/two_factor.html", _account_context(request, confirm_form=form), status=400)


@login_required
@require_POST
def two_factor_disable(request):
    form = TwoFactorDisableForm(request.POST)
    form.is_valid()
    address = client_ip(request)
    # Guessing codes here is guessing them at sign-in: the same count applies.
    refused = throttle.throttle_hit(
        throttle.TWO_FACTOR, account=request.user.email, address=address, record=False
    )
    status = 429
    if not refused:
        try:
            services.two_factor_disable(
                user=request.user,
                code=form.cleaned_data.get("code", ""),
                password=form.cleaned_data.get("password", ""),
            )
        except ServiceError as error:
            if error.code == "not_proven":
                throttle.throttle_hit(throttle.TWO_FACTOR, account=request.user.email, address=address)
            refused, status = error.message, 400
        else:
            messages.success(request, "Two-factor sign-in is off.")
            return redirect("account_two_factor")
    form.add_error("code", refused)
    return render(
        request, "teams/two_factor.html", _account_context(request, disable_form=form), status=status
    )


@login_required
@require_GET
def two_factor_required(request):
    """Why an organization's pages are closed to this person, and the way in."""
    membership = (
        Membership.objects.select_related("organization")
        .filter(
            user=request.user,
            organization__slug=request.GET.get("org", ""),
            organization__deleted_at__isnull=True,
        )
        .first()
    )
    organization = membership.organization if membership else None
    if membership and not services.two_factor_missing_for(membership=membership):
        return redirect(organization)
    return render(
        request,
        "teams/two_factor_required.html",
        {"required_by": organization, "role": membership.get_role_display() if membership else ""},
        status=403,
    )


@login_required
@require_POST
def organization_two_factor(request, org_slug: str):
    organization, _ = get_org_for_user(request, org_slug, min_role=Role.ADMIN)
    form = TwoFactorRequirementForm(request.POST)
    form.is_valid()
    require = bool(form.cleaned_data.get("require_two_factor"))
    try:
        services.organization_two_factor_set(
            organization=organization, actor=request.user, require=require, ip_address=client_ip(request)
        )
    except ServiceError as error:
        messages.error(request, error.message)
    else:
        if require:
            messages.success(request, "Owners, admins and billing managers now need two-factor sign-in here.")
        else:
            messages.success(request, "Two-factor sign-in is no longer required here.")
    return redirect("organization_settings", organization.slug)
