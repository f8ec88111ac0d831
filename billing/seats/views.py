import stripe
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_GET

from billing import seats
from teams.access import get_org_for_user


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
