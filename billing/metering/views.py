import json

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from billing import metering
from billing.metering.forms import UsageFilterForm
from common.csv_export import csv_response, safe_cell
from teams.access import get_org_for_user

EVENTS_PAGE = 50


# A page past this would ask PostgreSQL for an OFFSET beyond its 64-bit range.
MAX_PAGE = 100_000


def _page(request) -> int:
    try:
        return min(max(int(request.GET.get("page", 1)), 1), MAX_PAGE)
    except ValueError:
        return 1


@login_required
@require_GET
def usage_page(request, org_slug: str):
    organization, membership = get_org_for_user(request, org_slug)
    filters = UsageFilterForm(request.GET or None)
    page = _page(request)
    start = (page - 1) * EVENTS_PAGE
    rows = list(
        metering.events_of(organization=organization, **filters.filters())[start : start + EVENTS_PAGE + 1]
    )
    context = {
        "organization": organization,
        "membership": membership,
        "filters": filters,
        "events": rows[:EVENTS_PAGE],
        "page": page,
        "has_next": len(rows) > EVENTS_PAGE,
    }
    if request.htmx and request.htmx.target == "events":
        return render(request, "billing/usage.html#events", context)
    now = timezone.now()
    period, totals = metering.meter_totals(organization=organization, now=now)
    bars = metering.daily_usage_of(
        organization=organization, meters=[t.meter for t in totals], period=period, now=now
    )
    context.update(
        period=period,
        totals=totals,
        charts=[(t, bars[t.meter.pk]) for t in totals],
        preview=metering.invoice_preview(organization=organization, period=period, now=now),
    )
    return render(request, "billing/usage.html", context)


@login_required
@require_GET
def usage_export(request, org_slug: str):
    """The events as CSV, with the page's filters, streamed so that long histories fit."""
    organization, _ = get_org_for_user(request, org_slug)
    rows = metering.events_of(organization=organization, **UsageFilterForm(request.GET or None).filters())
    lines = (
        [
            timestamp.isoformat(),
            meter,
            safe_cell(event_id),
            value,
            period_start.isoformat(),
            safe_cell(json.dumps(properties or {}, sort_keys=True)) if properties else "",
        ]
        for event_id, meter, value, timestamp, properties, period_start in rows.iterator(chunk_size=500)
    )
    header = ["timestamp", "meter", "id", "value", "period_start", "properties"]
    return csv_response(f"{organization.slug}-usage.csv", header, lines)
