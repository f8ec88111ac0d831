"""Reporting metered usage to Stripe once per window: prepared rows, a lease, retries with back-off."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import stripe
from django.db import IntegrityError, transaction
from django.db.models import F, Max, Sum
from django.utils import timezone

from billing import selectors
from billing.gateway.client import stripe_client
from billing.metering.ingest import LATE_GRACE
from billing.models import (
    PLAN_STATUSES,
    MeterReport,
    OrgSubscription,
    PlanLineItem,
    UsageCounter,
)

LEASE = timedelta(minutes=5)


# Quick retries before a report is flagged failed to staff; it is still retried after that.
MAX_ATTEMPTS = 10


RETRY_CEILING = timedelta(hours=6)


@dataclass
class ReportOutcome:
    prepared: int = 0
    sent: int = 0
    failed: int = 0
    retrying: int = 0


def _identifier(organization_id: int, feature: str, period_start: datetime, window: int) -> str:
    return f"tally-{organization_id}-{feature}-{period_start:%Y%m%dT%H%M%S}-{window}"


def usage_report_prepare(*, now: datetime | None = None) -> int:
    """Write a pending report for every billed (organization, feature, period) whose usage
    moved since its last report. Safe to run concurrently and repeatedly: a window is unique,
    and the quantity is the difference from everything already reported, sent or not."""
    now = now or timezone.now()
    subscriptions = OrgSubscription.objects.filter(status__in=PLAN_STATUSES).select_related("plan")
    billed: dict[int, set[int]] = {}
    starts: dict[int, datetime] = {}
    items = PlanLineItem.objects.filter(kind=PlanLineItem.Kind.METERED).exclude(stripe_price_id="")
    by_plan = defaultdict(set)
    for plan_id, feature_id in items.values_list("plan_id", "feature_id"):
        by_plan[plan_id].add(feature_id)
    for sub in subscriptions:
        if by_plan.get(sub.plan_id):
            billed[sub.organization_id] = by_plan[sub.plan_id]
            starts[sub.organization_id] = sub.billing_cycle_anchor
    if not billed:
        return 0
    counters = UsageCounter.objects.filter(
        organization_id__in=billed, period_end__gt=now - LATE_GRACE
    ).select_related("feature", "organization")
    # Every window in the outbox, sent or not: an unsent one (pending or failed) is still owed to
    # Stripe and will be delivered under its own identifier, so a new window must not repeat it
    # (a repeat under a new identifier would be billed twice if the first had reached Stripe).
    queued = {
        (r["organization_id"], r["feature_id"], r["period_start"]): (r["total"], r["window"])
        for r in MeterReport.objects.filter(organization_id__in=billed, period_end__gt=now - LATE_GRACE)
        .values("organization_id", "feature_id", "period_start")
        .annotate(total=Sum("quantity"), window=Max("window"))
    }
    created = 0
    for counter in counters:
        org_id = counter.organization_id
        # Usage from before the subscription (e.g. on the free plan) is not Stripe's to bill.
        if counter.feature_id not in billed[org_id] or counter.period_start < starts[org_id]:
            continue
        total, window = queued.get((org_id, counter.feature_id, counter.period_start), (0, 0))
        if counter.used == total:
            continue
        customer = selectors.stripe_customer_id_of(counter.organization)
        if not customer:
            continue
        try:
            with transaction.atomic():
                MeterReport.objects.create(
                    organization_id=org_id,
                    feature_id=counter.feature_id,
                    period_start=counter.period_start,
                    period_end=counter.period_end,
                    window=window + 1,
                    quantity=counter.used - total,
                    total=counter.used,
                    identifier=_identifier(org_id, counter.feature.key, counter.period_start, window + 1),
                    stripe_customer_id=customer,
                    next_attempt_at=now,
                    created_at=now,
                )
        except IntegrityError:
            continue  # another reporter wrote this window; the next run covers any remainder
        created += 1
    return created


def _claim(report: MeterReport, now: datetime) -> bool:
    """Lease a due report to this sender; an expired lease (a crashed sender) is due again."""
    return (
        MeterReport.objects.filter(
            pk=report.pk, status__in=MeterReport.UNSENT, next_attempt_at__lte=now
        ).update(next_attempt_at=now + LEASE, attempts=F("attempts") + 1)
        == 1
    )


def meter_report_record(*, report: MeterReport, now: datetime) -> None:
    """Stripe accepted the report: mark it sent (once)."""
    MeterReport.objects.filter(pk=report.pk, status__in=MeterReport.UNSENT).update(
        status=MeterReport.Status.SENT, sent_at=now, last_error=""
    )


def backoff(attempts: int) -> timedelta:
    """30 s after the first failure, doubling each time, at most RETRY_CEILING apart."""
    return min(timedelta(seconds=30 * 2 ** min(attempts, 20)), RETRY_CEILING)


def _report_failed(report: MeterReport, error: Exception, now: datetime) -> bool:
    """Back off exponentially. After MAX_ATTEMPTS, or at once on an authentication error (a
    wrong or revoked key: retrying soon will not help), the report is marked failed so staff see
    it, and keeps being retried on the same back-off. True while it is still only pending."""
    attempts = report.attempts + 1
    pending = attempts < MAX_ATTEMPTS and not isinstance(error, stripe.AuthenticationError)
    MeterReport.objects.filter(pk=report.pk, status__in=MeterReport.UNSENT).update(
        status=MeterReport.Status.PENDING if pending else MeterReport.Status.FAILED,
        next_attempt_at=now + backoff(attempts),
        last_error=f"{type(error).__name__}: {error}"[:500],
    )
    return pending


def _event_time(report: MeterReport, now: datetime) -> int:
    # Inside the reported period, whatever the sender's delay: Stripe buckets by this time.
    latest = report.period_end - timedelta(seconds=1)
    return int(max(report.period_start, min(now, latest)).timestamp())


def usage_report_send(
    *, now: datetime | None = None, batch_size: int = 100, only: list[int] | None = None
) -> ReportOutcome:
    """Send due reports (pending, or failed and due again) to Stripe's billing meter events, a
    batch at a time, never inside a transaction. Each carries its deterministic identifier, so a
    resend is a no-op at Stripe. `only` limits the run to those reports."""
    now = now or timezone.now()
    outcome = ReportOutcome()
    client = stripe_client()
    while True:
        due = MeterReport.objects.filter(status__in=MeterReport.UNSENT, next_attempt_at__lte=now)
        if only is not None:
            due = due.filter(pk__in=only)
        due = list(due.select_related("feature").order_by("next_attempt_at", "pk")[:batch_size])
        claimed = [r for r in due if _claim(r, now)]
        for report in claimed:
            params = {
                "event_name": report.feature.key,
                "payload": {"stripe_customer_id": report.stripe_customer_id, "value": str(report.quantity)},
                "identifier": report.identifier,
                "timestamp": _event_time(report, now),
            }
            try:
                client.v1.billing.meter_events.create(params)
            except stripe.StripeError as error:
                if _report_failed(report, error, now):
                    outcome.retrying += 1
                else:
                    outcome.failed += 1
                continue
            meter_report_record(report=report, now=now)
            outcome.sent += 1
        if len(due) < batch_size or not claimed:
            return outcome


def usage_report_run(*, now: datetime | None = None, retry_now: bool = False) -> ReportOutcome:
    """The periodic job: prepare the outbox, then drain it. `retry_now` makes every unsent
    report due at once instead of at its back-off time (Stripe is known to be healthy again)."""
    now = now or timezone.now()
    prepared = usage_report_prepare(now=now)
    if retry_now:
        _make_due(MeterReport.objects.all(), now)
    outcome = usage_report_send(now=now)
    outcome.prepared = prepared
    return outcome


def _make_due(reports, now: datetime) -> list[int]:
    """Bring unsent reports' next attempt forward to `now`; their ids. (One that another sender
    is sending right now may go twice: Stripe keeps the first under its identifier.)"""
    unsent = reports.filter(status__in=MeterReport.UNSENT)
    ids = list(unsent.values_list("pk", flat=True))
    MeterReport.objects.filter(pk__in=ids, next_attempt_at__gt=now).update(next_attempt_at=now)
    return ids


def meter_report_retry(*, reports, now: datetime | None = None) -> ReportOutcome:
    """Staff's "Retry now": send these unsent reports at once, whatever their back-off says.
    Sent ones are left alone; each goes under its own identifier, so a retry never bills twice."""
    now = now or timezone.now()
    return usage_report_send(now=now, only=_make_due(reports, now))
