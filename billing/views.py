from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_GET

from billing import selectors
from billing.models import Interval, Plan, PlanLineItem

MAX_SEATS = 1000


def _seats(request, default: int) -> int:
    try:
        seats = int(request.GET.get("seats", default))
    except ValueError:
        return default
    return min(max(seats, 1), MAX_SEATS)


@require_GET
def pricing(request):
    interval = request.GET.get("interval", Interval.MONTH)
    if interval not in Interval.values:
        interval = Interval.MONTH
    seats = _seats(request, 5)
    offers = selectors.pricing_offers(interval, seats=seats)
    features = list(selectors.features_for_comparison())
    # The comparison table: one row per feature, one cell per offer.
    rows = []
    for feature in features:
        cells = []
        for offer in offers:
            ent = next((e for e in offer.plan.entitlements.all() if e.feature_id == feature.pk), None)
            cells.append(ent)
        rows.append((feature, cells))
    context = {
        "interval": interval,
        "offers": offers,
        "rows": rows,
        "addons": selectors.active_addons(),
        "seats": seats,
        "max_seats": MAX_SEATS,
    }
    if request.htmx and request.htmx.target == "plans":
        return render(request, "billing/pricing.html#plans", context)
    return render(request, "billing/pricing.html", context)


@require_GET
def pricing_seats(request):
    """The per-seat total and its tier breakdown for a seat count (htmx, as you type)."""
    plan = (
        Plan.objects.public().filter(key=request.GET.get("plan", "")).prefetch_related("line_items").first()
    )
    if plan is None or plan.seat_item() is None:
        raise Http404("No per-seat plan by that name.")
    seats = _seats(request, 1)
    item: PlanLineItem = plan.seat_item()
    return render(
        request,
        "billing/partials/seat_total.html",
        {
            "plan": plan,
            "seats": seats,
            "breakdown": item.breakdown(seats),
            "total": plan.total(seats=seats),
        },
    )
