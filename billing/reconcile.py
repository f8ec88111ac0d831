"""The promises of the README, checked on live data against Stripe (`billing_reconcile`).

- I1: at most one live Stripe subscription per organization, and it is the one Tally tracks;
- I4: each billed meter's total in Stripe equals the usage Tally recorded;
- I5: the seat quantity in Stripe equals the billable members.

Each check names the organizations that break it. With `fix`, what is safe to repair is
repaired (a resync from Stripe, a seat sync, a meter report run) and the breach says what was
done; what needs a person (which of two live subscriptions to keep and what to refund, usage
Stripe has more of than Tally recorded) is only reported. The credit invariants (I2, I3) live
in `credits.reconcile`. The model-based test (tests/invariants) runs the same checks.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from djstripe.models import Customer

from billing import metering, seats, selectors
from billing.gateway.client import stripe_client
from billing.metering import days
from billing.models import MeterReport, OrgSubscription, Payment, PlanLineItem, UsageCounter
from billing.seats.counts import billable_seats
from billing.seats.sync import seat_sync
from billing.subscriptions.payments import invoice_record
from billing.subscriptions.sync import (
    _plan_of,
    live_subscriptions,
    subscription_duplicate_end,
    subscription_sync,
)
from teams.models import Organization


@dataclass(frozen=True)
class Breach:
    organization: Organization
    invariant: str
    detail: str
    fixed: str = ""

    def __str__(self) -> str:
        done = f" (fixed: {self.fixed})" if self.fixed else ""
        return f"{self.organization.slug}: {self.invariant} {self.detail}{done}"


def customers_of(organizations: Iterable[Organization] | None = None) -> list[tuple[Organization, str]]:
    """(organization, Stripe customer id) for every organization with a customer, oldest first."""
    rows = Customer.objects.filter(subscriber__isnull=False, date_purged__isnull=True).select_related(
        "subscriber"
    )
    if organizations is not None:
        rows = rows.filter(subscriber__in=list(organizations))
    seen: dict[int, tuple[Organization, str]] = {}
    for customer in rows.order_by("subscriber_id", "-created"):
        seen.setdefault(customer.subscriber_id, (customer.subscriber, customer.id))
    return list(seen.values())


# --- I1 --------------------------------------------------------------------------------------


def subscriptions_check(
    *, organizations: Iterable[Organization] | None = None, fix: bool = False
) -> list[Breach]:
    """I1: at most one live subscription in Stripe, and Tally tracks it (or, with none live,
    does not think one is in force)."""
    breaches = []
    for organization, customer_id in customers_of(organizations):
        live = live_subscriptions(customer_id)
        local = OrgSubscription.objects.filter(organization=organization).first()
        tracked = local.stripe_subscription_id if local else None
        if len(live) > 1:
            ids = ", ".join(sorted(s.id for s in live))
            breaches.append(
                Breach(
                    organization,
                    "I1",
                    f"has {len(live)} live subscriptions in Stripe ({ids}); Tally tracks {tracked}. "
                    "Cancel and refund the one(s) not wanted in Stripe.",
                )
            )
            continue
        if len(live) == 1 and live[0].id != tracked:
            fixed = ""
            if fix:
                synced = subscription_sync(subscription_id=live[0].id)
                if synced is not None and synced.stripe_subscription_id == live[0].id:
                    fixed = f"now tracking {live[0].id}"
            breaches.append(
                Breach(
                    organization,
                    "I1",
                    f"Stripe's live subscription {live[0].id} ({live[0].status}) is not the one Tally "
                    f"tracks ({tracked})",
                    fixed,
                )
            )
        elif not live and local is not None and tracked and local.applies:
            fixed = ""
            if fix:
                synced = subscription_sync(subscription_id=tracked)
                if synced is not None and not synced.applies:
                    fixed = f"resynced: {synced.status}"
            breaches.append(
                Breach(
                    organization,
                    "I1",
                    f"Tally has {tracked} in force ({local.status}) but it is not live in Stripe",
                    fixed,
                )
            )
    return breaches


# --- I4 --------------------------------------------------------------------------------------


def _meter_ids() -> dict[str, str]:
    client = stripe_client()
    return {
        m.event_name: m.id
        for m in client.v1.billing.meters.list({"limit": 100}).auto_paging_iter()
        if m.status == "active"
    }


def stripe_meter_total(*, meter_id: str, customer_id: str, start: datetime, end: datetime) -> int:
    summaries = stripe_client().v1.billing.meters.event_summaries.list(
        meter_id,
        {"customer": customer_id, "start_time": int(start.timestamp()), "end_time": int(end.timestamp())},
    )
    return sum(int(s.aggregated_value) for s in summaries.data)


def meters_check(*, organizations: Iterable[Organization] | None = None, fix: bool = False) -> list[Breach]:
    """I4: for every billed metered feature of an organization on a plan that bills it, the
    usage Stripe's meter holds for each period since the subscription began equals Tally's
    counter (usage before the subscription is not Stripe's to bill)."""
    meters: dict[str, str] | None = None
    found: list[tuple[Organization, str]] = []
    for organization, customer_id in customers_of(organizations):
        local = OrgSubscription.objects.select_related("plan").filter(organization=organization).first()
        if local is None or not local.applies or local.billing_cycle_anchor is None:
            continue
        features = set(
            PlanLineItem.objects.filter(plan=local.plan, kind=PlanLineItem.Kind.METERED)
            .exclude(stripe_price_id="")
            .values_list("feature_id", flat=True)
        )
        if not features:
            continue
        meters = _meter_ids() if meters is None else meters
        counters = UsageCounter.objects.filter(
            organization=organization, feature_id__in=features, period_start__gte=local.billing_cycle_anchor
        ).select_related("feature")
        for counter in counters:
            meter_id = meters.get(counter.feature.key)
            if meter_id is None:
                found.append((organization, f"{counter.feature.key} has no meter in Stripe"))
                continue
            total = stripe_meter_total(
                meter_id=meter_id, customer_id=customer_id, start=counter.period_start, end=counter.period_end
            )
            if total != counter.used:
                open_reports = MeterReport.objects.filter(
                    organization=organization, feature=counter.feature, period_start=counter.period_start
                ).exclude(status=MeterReport.Status.SENT)
                found.append(
                    (
                        organization,
                        f"{counter.feature.key} from {counter.period_start:%Y-%m-%d %H:%M}: Stripe has "
                        f"{total}, Tally recorded {counter.used} ({open_reports.count()} report(s) not sent)",
                    )
                )
    fixed = ""
    if fix and found:
        outcome = metering.usage_report_run()
        fixed = f"report run: {outcome.prepared} prepared, {outcome.sent} sent, {outcome.failed} failed"
    return [Breach(org, "I4", detail, fixed) for org, detail in found]


# --- I5 --------------------------------------------------------------------------------------


def seats_check(*, organizations: Iterable[Organization] | None = None, fix: bool = False) -> list[Breach]:
    """I5: the quantity of the seat item in Stripe equals the organization's billable seats."""
    breaches = []
    client = stripe_client()
    for organization, _customer in customers_of(organizations):
        local = OrgSubscription.objects.filter(organization=organization).first()
        if local is None or not local.stripe_subscription_id or not local.applies:
            continue
        if organization.deleted_at is not None:
            continue
        remote = client.v1.subscriptions.retrieve(local.stripe_subscription_id)
        if remote.status not in ("active", "trialing", "past_due"):
            continue
        plan, quantity = _plan_of(remote)
        if plan is None or plan.seat_item() is None:
            continue
        billable = billable_seats(organization, plan=plan)
        if billable == quantity:
            continue
        fixed = ""
        if fix:
            done = seats.seat_sync(organization_id=organization.pk)
            if done is not None:
                fixed = f"seats set from {done.before} to {done.after}"
        breaches.append(
            Breach(organization, "I5", f"Stripe bills {quantity} seat(s), {billable} are billable", fixed)
        )
    return breaches


def billing_invariants_check(
    *, organizations: Iterable[Organization] | None = None, fix: bool = False
) -> list[Breach]:
    organizations = list(organizations) if organizations is not None else None
    return (
        subscriptions_check(organizations=organizations, fix=fix)
        + meters_check(organizations=organizations, fix=fix)
        + seats_check(organizations=organizations, fix=fix)
    )


def usage_days_check(*, organizations: Iterable[Organization]) -> list[Breach]:
    """I8: each day of usage the charts and totals read equals the sum of its events."""
    return [
        Breach(organization, "I8", difference)
        for organization in organizations
        for difference in days.usage_days_differences(organization.pk)
    ]


# --- Subscriptions against Stripe ------------------------------------------------------------


@dataclass(frozen=True)
class Drift:
    organization: Organization
    field: str
    local: object
    remote: object


def subscription_reconcile(*, fix: bool = False) -> list[Drift]:
    """Compare every organization's subscription with Stripe; with `fix`, resync the drifted.

    Catches what a lost webhook would leave behind: a plan, status, seat count or cancellation
    that Stripe has and Tally does not; and a seat quantity in Stripe that differs from the
    billable members (a lost seat sync), which `fix` sets right in Stripe."""
    client = stripe_client()
    drifts: list[Drift] = []
    for local in OrgSubscription.objects.exclude(stripe_subscription_id=None).select_related(
        "plan", "organization"
    ):
        remote = client.v1.subscriptions.retrieve(local.stripe_subscription_id)
        plan, seats = _plan_of(remote)
        expected_plan = local.plan if local.pending_plan_id == (plan.pk if plan else None) else plan
        found = []
        if expected_plan and expected_plan.pk != local.plan_id:
            found.append(Drift(local.organization, "plan", local.plan.key, expected_plan.key))
        if remote.status != local.status:
            found.append(Drift(local.organization, "status", local.status, remote.status))
        if seats != local.seats:
            found.append(Drift(local.organization, "seats", local.seats, seats))
        if bool(remote.cancel_at_period_end) != local.cancel_at_period_end:
            found.append(
                Drift(
                    local.organization,
                    "cancel_at_period_end",
                    local.cancel_at_period_end,
                    bool(remote.cancel_at_period_end),
                )
            )
        drifts += found
        if fix and found:
            subscription_sync(subscription_id=local.stripe_subscription_id)
        seat_plan = expected_plan or local.plan
        if (
            seat_plan.seat_item() is not None
            and remote.status in ("active", "trialing", "past_due")
            and local.organization.deleted_at is None
        ):
            billable = billable_seats(local.organization, plan=seat_plan)
            if billable != seats:
                drifts.append(Drift(local.organization, "billable seats", billable, seats))
                if fix:
                    seat_sync(organization_id=local.organization_id)
    drifts += _live_subscriptions_reconcile(client, fix=fix)
    return drifts


def payments_reconcile(*, fix: bool = False) -> list[Drift]:
    """A paid invoice Stripe has and the payment history lacks: its `invoice.paid` webhook was
    lost. With `fix`, it is recorded as the webhook would have (idempotent by invoice id). Run
    after the subscriptions are reconciled, so one Tally just started tracking is included."""
    client = stripe_client()
    drifts = []
    known = set(Payment.objects.exclude(stripe_invoice_id="").values_list("stripe_invoice_id", flat=True))
    for local in OrgSubscription.objects.exclude(stripe_subscription_id=None).select_related("organization"):
        listed = client.v1.invoices.list(
            {"subscription": local.stripe_subscription_id, "status": "paid", "limit": 100}
        )
        for invoice in listed.auto_paging_iter():
            if invoice.id in known or invoice.amount_paid <= 0:
                continue
            drifts.append(Drift(local.organization, "payment", None, invoice.id))
            if fix:
                invoice_record(invoice_id=invoice.id)
    return drifts


def _live_subscriptions_reconcile(client, *, fix: bool) -> list[Drift]:
    """At most one live Stripe subscription per organization. With `fix`, the ones Tally does
    not track are ended as duplicates (canceled, refunded, the owners told); when Tally tracks
    none of them, the oldest is kept and recorded."""
    drifts = []
    tracked = dict(
        OrgSubscription.objects.exclude(stripe_subscription_id=None).values_list(
            "organization_id", "stripe_subscription_id"
        )
    )
    for customer_id, organization in selectors.customers_of_organizations():
        live = live_subscriptions(customer_id, client=client)
        if len(live) <= 1:
            continue
        ours = tracked.get(organization.pk)
        drifts.append(
            Drift(organization, "live subscriptions", int(any(sub.id == ours for sub in live)), len(live))
        )
        if not fix:
            continue
        kept = next((sub for sub in live if sub.id == ours), None)
        if kept is None:
            kept = min(live, key=lambda sub: (sub.created, sub.id))
            subscription_sync(subscription_id=kept.id)
        for sub in live:
            if sub.id != kept.id:
                subscription_duplicate_end(organization=organization, remote=sub, kept_id=kept.id)
    return drifts
