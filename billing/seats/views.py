"""Seat pages: what one more member costs, and changing the number of prepaid seats."""

import uuid

import stripe
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from billing import seats, selectors
from common.errors import ServiceError
from teams.access import get_org_for_user
from teams.models import Role


@login_required
@require_GET
def seat_preview(request, org_slug: str):
    """What one more member costs, and the invoice after it: shown beside the invite form
    (loaded after the page, since it asks Stripe)."""
    organization, membership = get_org_for_user(request, org_slug)
    failed = False
    try:
        preview = seats.seat_preview(organization=organization, with_invoice=membership.can_manage_billing)
    except stripe.StripeError:
        # The tier arithmetic needs no network: show it without Stripe's invoice.
        preview, failed = seats.seat_preview(organization=organization), True
    context = {"organization": organization, "membership": membership, "preview": preview, "failed": failed}
    template = "billing/seats.html#preview" if request.htmx else "billing/seats.html"
    return render(request, template, context)


def _refused(request, organization, membership, error: ServiceError, *, template: str, **context):
    """A refused seat change: the page again, with the reason, its field and code."""
    context = {"organization": organization, "membership": membership, "error": error, **context}
    return render(request, template, context, status=error.status)


@login_required
@require_http_methods(["GET", "POST"])
def seats_prepaid(request, org_slug: str):
    """Prepaid seats: Stripe's prorated amount for the new count, then the confirmation."""
    organization, membership = get_org_for_user(request, org_slug, min_role=Role.BILLING)
    data = request.POST if request.method == "POST" else request.GET
    try:
        if request.method == "POST":
            subscription = seats.seats_prepaid_set(
                organization=organization,
                seats=data.get("seats"),
                actor=request.user,
                attempt=data.get("code", "")[:64],
            )
            messages.success(request, f"{organization.name} now has {subscription.seats} seats.")
            return redirect(reverse("billing", args=[organization.slug]) + "#seats")
        preview = seats.seats_prepaid_preview(organization=organization, seats=data.get("seats"))
    except ServiceError as error:
        return _refused(request, organization, membership, error, template="billing/prepaid_seats.html")
    except stripe.StripeError:
        messages.error(request, "Stripe did not answer, so the seats did not change; please try again.")
        return redirect(reverse("billing", args=[organization.slug]) + "#seats")
    context = {
        "organization": organization,
        "membership": membership,
        "preview": preview,
        "code": uuid.uuid4().hex,
        "subscription": selectors.subscription_of(organization),
    }
    return render(request, "billing/prepaid_seats.html", context)
