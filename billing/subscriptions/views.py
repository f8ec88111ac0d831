"""Add-ons bought after subscribing: one-time ones through Checkout, recurring ones added to
the subscription after Stripe's proration."""

import uuid

import stripe
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from billing import selectors, subscriptions
from common.checkout import checkout_redirect
from common.errors import ServiceError
from teams.access import get_org_for_user
from teams.models import Role


def _refused(request, organization, membership, error: ServiceError, *, template: str, **context):
    """A refused add-on or seat change: the page again, with the reason, its field and code."""
    context = {"organization": organization, "membership": membership, "error": error, **context}
    return render(request, template, context, status=error.status)


@login_required
@require_POST
def addon_buy(request, org_slug: str, key: str):
    """The buy button of an add-on on the billing page: a one-time add-on goes to Checkout; a
    recurring one to the confirmation with Stripe's proration."""
    organization, membership = get_org_for_user(request, org_slug, min_role=Role.BILLING)
    back = reverse("billing", args=[organization.slug]) + "#addons"
    try:
        addon = subscriptions.addon_find(organization=organization, key=key)
        quantity = subscriptions.addon_quantity(addon, request.POST.get("quantity"))
    except ServiceError as error:
        return _refused(request, organization, membership, error, template="billing/addon.html")
    if addon.kind == addon.Kind.RECURRING:
        url = reverse("billing_addon_add", args=[organization.slug, addon.key]) + f"?quantity={quantity}"
        return HttpResponseClientRedirect(url) if request.htmx else redirect(url)

    def start() -> str:
        return subscriptions.addon_checkout_start(
            organization=organization, addon=addon, quantity=quantity, actor=request.user
        )

    return checkout_redirect(request, start, back=back)


@login_required
@require_http_methods(["GET", "POST"])
def addon_add(request, org_slug: str, key: str):
    """A recurring add-on: Stripe's prorated amount first, then the confirmation adds it."""
    organization, membership = get_org_for_user(request, org_slug, min_role=Role.BILLING)
    data = request.POST if request.method == "POST" else request.GET
    try:
        addon = subscriptions.addon_find(organization=organization, key=key)
        quantity = subscriptions.addon_quantity(addon, data.get("quantity"))
        if request.method == "POST":
            try:
                code = uuid.UUID(data.get("code", ""))
            except ValueError:
                raise ServiceError(
                    "invalid_request", "Confirm from the preview page.", field="code"
                ) from None
            purchase = subscriptions.addon_subscription_add(
                organization=organization,
                addon=addon,
                quantity=quantity,
                actor=request.user,
                code=code,
                proration_date=data.get("proration_date"),
            )
            if purchase.status == purchase.Status.GRANTED:
                messages.success(request, f"{purchase.quantity} × {addon.name} added to your subscription.")
            else:
                messages.error(request, f"{addon.name} was not added: {purchase.failure_message}")
            return redirect(reverse("billing", args=[organization.slug]) + "#addons")
        preview = subscriptions.addon_subscription_preview(
            organization=organization, addon=addon, quantity=quantity
        )
    except ServiceError as error:
        return _refused(request, organization, membership, error, template="billing/addon.html")
    except stripe.StripeError:
        messages.error(request, "Stripe did not answer, so nothing changed; please try again.")
        return redirect(reverse("billing", args=[organization.slug]) + "#addons")
    context = {
        "organization": organization,
        "membership": membership,
        "preview": preview,
        "code": uuid.uuid4(),
        "subscription": selectors.subscription_of(organization),
    }
    return render(request, "billing/addon.html", context)


@login_required
@require_GET
def addon_bought(request, org_slug: str, code: uuid.UUID):
    """Back from an add-on's Checkout: granted now if Stripe says it is paid."""
    organization, _ = get_org_for_user(request, org_slug, min_role=Role.BILLING)
    try:
        purchase = subscriptions.addon_checkout_return(organization=organization, code=code)
    except ServiceError:
        raise Http404("No such purchase.") from None
    except stripe.StripeError:
        messages.info(request, "Your payment is being confirmed; the add-on appears here shortly.")
        return redirect(reverse("billing", args=[organization.slug]) + "#addons")
    if purchase.status == purchase.Status.GRANTED:
        messages.success(request, f"Thank you: {purchase.quantity} × {purchase.addon.name} is yours.")
    else:
        messages.info(request, "Your payment is being confirmed; the add-on appears here shortly.")
    return redirect(reverse("billing", args=[organization.slug]) + "#addons")


@login_required
@require_POST
def addon_remove(request, org_slug: str, code: uuid.UUID):
    organization, membership = get_org_for_user(request, org_slug, min_role=Role.BILLING)
    try:
        purchase = subscriptions.addon_subscription_remove(
            organization=organization, code=code, actor=request.user
        )
    except ServiceError as error:
        return _refused(request, organization, membership, error, template="billing/addon.html")
    except stripe.StripeError:
        messages.error(request, "Stripe did not answer, so the add-on stays; please try again.")
    else:
        until = f" on {purchase.ends_at:%-d %B %Y}" if purchase.ends_at else ""
        messages.success(
            request, f"{purchase.addon.name} ends with this period{until}; it is not billed again."
        )
    return redirect(reverse("billing", args=[organization.slug]) + "#addons")
