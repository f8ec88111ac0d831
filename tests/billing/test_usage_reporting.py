"""Reporting usage to Stripe through the outbox, and the invoice Stripe makes of it."""

from datetime import UTC, datetime, timedelta

import pytest
import stripe
from django.core.management import call_command
from django.utils import timezone

from billing import entitlements, services, usage
from billing.models import MeterReport, Plan
from billing.stripe_client import stripe_client
from billing.subscriptions import customer_ensure

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(stripe_sim, org, owner):
    """Acme on the Team plan, subscribed in the simulator on a test clock."""
    services.catalog_push()
    client = stripe_client()
    start = int(timezone.now().timestamp())
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": start})
    customer = customer_ensure(organization=org, test_clock=clock.id)
    card = client.v1.payment_methods.attach("pm_card_visa", {"customer": customer})
    client.v1.customers.update(customer, {"invoice_settings": {"default_payment_method": card.id}})
    plan = Plan.objects.get(key="team_monthly")
    items = {i.key: i for i in plan.line_items.all()}
    sub = client.v1.subscriptions.create(
        {
            "customer": customer,
            "items": [
                {"price": items["seats"].stripe_price_id, "quantity": 5},
                {"price": items["ai_generations"].stripe_price_id},
            ],
        }
    )
    item = sub["items"].data[0]
    period_start = datetime.fromtimestamp(item.current_period_start, UTC)
    period_end = datetime.fromtimestamp(item.current_period_end, UTC)
    services.subscription_set(
        organization=org,
        plan=plan,
        status="active",
        seats=5,
        billing_cycle_anchor=period_start,
        current_period_start=period_start,
        current_period_end=period_end,
        stripe_subscription_id=sub.id,
    )
    entitlements.invalidate(org)
    return {
        "client": client,
        "clock": clock.id,
        "customer": customer,
        "sub": sub.id,
        "start": period_start,
        "end": period_end,
        "metered_price": items["ai_generations"].stripe_price_id,
    }


def generations(org, n, *, at, prefix="g"):
    events = [{"id": f"{prefix}{i}", "meter": "ai_generations", "value": 1} for i in range(n)]
    for chunk in range(0, n, 1000):
        result = usage.usage_ingest(organization=org, events=events[chunk : chunk + 1000], now=at)
        assert result.rejected == 0


def stripe_usage(team) -> int:
    client = team["client"]
    meter = next(
        m for m in client.v1.billing.meters.list({"limit": 100}).data if m.event_name == "ai_generations"
    )
    summary = client.v1.billing.meters.event_summaries.list(
        meter.id,
        {
            "customer": team["customer"],
            "start_time": int(team["start"].timestamp()),
            "end_time": int(team["end"].timestamp()),
        },
    )
    return summary.data[0].aggregated_value


def test_a_renewal_invoices_exactly_the_preview(team, org):
    at = team["start"] + timedelta(hours=1)
    generations(org, 450, at=at)
    usage.usage_report_run(now=at)
    generations(org, 170, at=at + timedelta(days=3), prefix="more")
    usage.usage_report_run(now=at + timedelta(days=3))
    preview = usage.invoice_preview(organization=org, now=at + timedelta(days=3))
    (line,) = preview.lines
    assert (line.quantity, line.included, line.overage, line.amount) == (620, 500, 120, 600)

    client = team["client"]
    client.v1.test_helpers.test_clocks.advance(
        team["clock"], {"frozen_time": int(team["end"].timestamp()) + 10}
    )
    renewal = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(team["sub"]).latest_invoice)
    metered = [li for li in renewal.lines.data if li.pricing.price_details.price == team["metered_price"]]
    assert [(li.quantity, li.amount) for li in metered] == [(line.quantity, line.amount)]
    assert MeterReport.objects.filter(organization=org).count() == 2


def test_it_reports_only_what_moved(team, org):
    at = team["start"] + timedelta(hours=1)
    generations(org, 30, at=at)
    first = usage.usage_report_run(now=at)
    second = usage.usage_report_run(now=at + timedelta(minutes=5))
    assert (first.prepared, first.sent) == (1, 1)
    assert (second.prepared, second.sent) == (0, 0)
    assert stripe_usage(team) == 30


def test_a_crash_between_sending_and_recording_does_not_double_report(team, org, monkeypatch):
    at = team["start"] + timedelta(hours=1)
    generations(org, 42, at=at)

    def crash(**kwargs):
        raise RuntimeError("the process died here")

    record = usage.meter_report_record
    monkeypatch.setattr(usage, "meter_report_record", crash)
    with pytest.raises(RuntimeError):
        usage.usage_report_run(now=at)
    report = MeterReport.objects.get()
    assert report.status == "pending"
    assert stripe_usage(team) == 42  # Stripe has it; Tally does not know yet

    monkeypatch.setattr(usage, "meter_report_record", record)
    # The sender's lease runs out, and the next run sends the same report again.
    outcome = usage.usage_report_run(now=at + usage.LEASE + timedelta(seconds=1))
    assert (outcome.prepared, outcome.sent) == (0, 1)
    report.refresh_from_db()
    assert report.status == "sent"
    assert stripe_usage(team) == 42


def test_it_retries_with_back_off_when_stripe_fails(team, org, monkeypatch):
    at = team["start"] + timedelta(hours=1)
    generations(org, 5, at=at)
    calls = []

    def down(self, params, options=None):
        calls.append(params["identifier"])
        raise stripe.APIConnectionError("Stripe is unreachable")

    monkeypatch.setattr(stripe.billing.MeterEventService, "create", down)
    outcome = usage.usage_report_run(now=at)
    assert outcome.retrying == 1
    report = MeterReport.objects.get()
    assert (report.status, report.attempts) == ("pending", 1)
    assert report.next_attempt_at > at
    assert "unreachable" in report.last_error
    # Not due yet: nothing is sent.
    assert usage.usage_report_send(now=at + timedelta(seconds=1)).retrying == 0
    monkeypatch.undo()
    assert usage.usage_report_send(now=report.next_attempt_at).sent == 1
    assert stripe_usage(team) == 5
    assert len(set(calls)) == 1 and calls[0] == report.identifier


def test_the_identifier_is_deterministic_per_org_feature_period_and_window(team, org):
    at = team["start"] + timedelta(hours=1)
    generations(org, 1, at=at)
    usage.usage_report_prepare(now=at)
    report = MeterReport.objects.get()
    start = team["start"].strftime("%Y%m%dT%H%M%S")
    assert report.identifier == f"tally-{org.pk}-ai_generations-{start}-1"


def test_the_command_reports(team, org, capsys):
    generations(org, 3, at=timezone.now())
    call_command("usage_report")
    assert "1 prepared, 1 sent" in capsys.readouterr().out


def test_free_plan_usage_is_not_reported(stripe_sim, org):
    usage.usage_ingest(organization=org, events=[{"id": "g", "meter": "ai_generations", "value": 2}])
    assert usage.usage_report_prepare() == 0
