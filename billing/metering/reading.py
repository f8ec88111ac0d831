"""Reading usage: totals per meter, the daily bars, the events behind them, and the invoice lines
the period will produce."""

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing import entitlements, pricing
from billing.entitlements.decisions import Decision
from billing.metering import days
from billing.models import (
    PLAN_STATUSES,
    Feature,
    Meter,
    OrgSubscription,
    Plan,
    PlanLineItem,
    UsageCounter,
    UsageEvent,
)
from billing.periods import Period
from teams.models import Organization


@dataclass(frozen=True)
class MeterTotal:
    meter: Meter
    total: int
    decision: Decision | None  # the fed feature's quota, when there is one

    @property
    def percent(self) -> int:
        return self.decision.percent if self.decision else 0

    @property
    def unit(self) -> str:
        """The fed feature's unit (its total is in it), or none for a meter that feeds nothing."""
        return self.decision.unit if self.decision else ""


def _event_aggregates(organization, meters: list[Meter], period_start: datetime) -> dict[int, int]:
    return days.period_totals(organization_id=organization.pk, meters=meters, period_start=period_start)


def meter_aggregate(*, organization: Organization, meter: Meter, period_start: datetime) -> int:
    """A meter's value for one period, computed from its stored events."""
    return _event_aggregates(organization, [meter], period_start).get(meter.pk, 0) or 0


def meter_totals(
    *, organization: Organization, now: datetime | None = None
) -> tuple[Period, list[MeterTotal]]:
    """Every active meter's total for the current period, with its quota when it feeds one.

    A meter that feeds a feature reads the feature's counter, which also holds usage recorded
    through `entitlements.consume` (e.g. the product's generations).
    """
    now = now or timezone.now()
    period = entitlements.effective_for(organization, now=now).period(now)
    meters = list(Meter.objects.filter(is_active=True).select_related("feature"))
    # A gauge feeding a limit keeps its own total, in its own units, beside the limit's usage.
    aggregates = _event_aggregates(
        organization,
        [m for m in meters if m.feature is None or m.feature.kind == Feature.Kind.LIMIT],
        period.start,
    )
    # Exact counts from the counters (one query), not the cached ones `check` answers from.
    counted = dict(
        UsageCounter.objects.filter(organization=organization, period_start=period.start).values_list(
            "feature_id", "used"
        )
    )
    totals = []
    for meter in meters:
        if meter.feature:
            decision = entitlements.check(organization, meter.feature.key, 0, now=now)
            if meter.feature.kind == Feature.Kind.METERED:
                decision = replace(decision, used=counted.get(meter.feature_id, 0))
                totals.append(MeterTotal(meter, decision.used, decision))
            else:  # the limit's usage is the gauge's latest value, in the limit's units
                totals.append(MeterTotal(meter, aggregates.get(meter.pk) or 0, decision))
        else:
            totals.append(MeterTotal(meter, aggregates.get(meter.pk) or 0, None))
    return period, totals


@dataclass(frozen=True)
class Bar:
    label: str
    day: str
    value: int
    percent: int


def daily_usage(*, organization: Organization, meter: Meter, period: Period, now: datetime) -> list[Bar]:
    """One bar per day of the period so far: the meter's aggregation over that day's events
    (see `days.daily_values` for what a day holds)."""
    return daily_usage_of(organization=organization, meters=[meter], period=period, now=now)[meter.pk]


def daily_usage_of(
    *, organization: Organization, meters: list[Meter], period: Period, now: datetime
) -> dict[int, list[Bar]]:
    """`daily_usage` for several meters, in one query."""
    values = days.daily_values(organization_id=organization.pk, meters=meters, period_start=period.start)
    dates = []
    day = period.start.date()
    last = min(now, period.end - timedelta(seconds=1)).date()
    while day <= last:
        dates.append(day)
        day += timedelta(days=1)
    bars = {}
    for meter in meters:
        of_meter = values[meter.pk]
        top = max([of_meter.get(d, 0) for d in dates] + [1])
        bars[meter.pk] = [
            Bar(d.strftime("%-d %b"), d.isoformat(), of_meter.get(d, 0), of_meter.get(d, 0) * 100 // top)
            for d in dates
        ]
    return bars


def events_of(
    *,
    organization: Organization,
    meter: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    event_id: str = "",
):
    """Stored usage, newest first: events sent to meters, and units recorded through
    `entitlements.consume` on a metered feature (shown under the meter that feeds it)."""
    events = UsageEvent.objects.filter(
        Q(meter__isnull=False) | Q(feature__meter__isnull=False), organization=organization
    )
    if meter:
        events = events.filter(Q(meter__key=meter) | Q(feature__meter__key=meter))
    if since:
        events = events.filter(timestamp__gte=since)
    if until:
        events = events.filter(timestamp__lt=until)
    if event_id:
        events = events.filter(event_id__icontains=event_id)
    return events.order_by("-timestamp", "-event_id").values_list(
        "event_id",
        Coalesce("meter__key", "feature__meter__key"),
        "value",
        "timestamp",
        "properties",
        "period_start",
    )


@dataclass(frozen=True)
class PreviewLine:
    feature: Feature
    item: PlanLineItem
    quantity: int
    included: int | None  # None when unlimited
    overage: int
    breakdown: pricing.Breakdown

    @property
    def amount(self) -> int:
        return self.breakdown.total

    @property
    def unit_amount(self) -> int | None:
        return self.item.unit_amount if not self.item.tiers else None


@dataclass(frozen=True)
class InvoicePreview:
    plan: Plan | None
    period: Period
    currency: str
    lines: list[PreviewLine] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)


def _plan_of(organization: Organization) -> Plan | None:
    subscription = OrgSubscription.objects.select_related("plan").filter(organization=organization).first()
    if subscription and subscription.status in PLAN_STATUSES:
        return subscription.plan
    return Plan.objects.filter(is_free=True).first()


def invoice_preview(
    *, organization: Organization, period: Period | None = None, now: datetime | None = None
) -> InvoicePreview:
    """What the period's metered usage adds to the invoice: per billed feature, the quantity,
    the quota the plan includes, the units past it, the tier or unit price, and the amount,
    with Stripe's tier arithmetic."""
    now = now or timezone.now()
    effective = entitlements.effective_for(organization, now=now)
    period = period or effective.period(now)
    plan = _plan_of(organization)
    if plan is None:
        return InvoicePreview(None, period, "usd")
    items = list(plan.line_items.filter(kind=PlanLineItem.Kind.METERED).select_related("feature"))
    used = dict(
        UsageCounter.objects.filter(
            organization=organization, period_start=period.start, feature_id__in=[i.feature_id for i in items]
        ).values_list("feature_id", "used")
    )
    lines = []
    for item in items:
        quantity = used.get(item.feature_id, 0)
        ent = effective.features.get(item.feature.key)
        included = None if ent is None or ent.unlimited else ent.limit
        lines.append(
            PreviewLine(
                feature=item.feature,
                item=item,
                quantity=quantity,
                included=included,
                overage=max(quantity - included, 0) if included is not None else 0,
                breakdown=item.breakdown(quantity),
            )
        )
    return InvoicePreview(plan, period, plan.currency, lines)
