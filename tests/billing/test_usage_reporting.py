"""Reporting usage to Stripe through the outbox, and the invoice Stripe makes of it."""

from datetime import UTC, datetime, timedelta

import pytest
import requests
from django.conf import settings
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from billing import catalog, entitlements, metering
from billing.gateway.client import stripe_client
from billing.gateway.customers import customer_ensure
from billing.metering import reporting
from billing.metering.tasks import report_usage
from billing.models import MeterReport, Plan, UsageCounter
from tests.factories import UserFactory
from tests.races import race

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(stripe_sim, org, owner):
    """Acme on the Team plan, subscribed in the simulator on a test clock."""
    catalog.catalog_push()
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
    entitlements.subscription_set(
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
        result = metering.usage_ingest(organization=org, events=events[chunk : chunk + 1000], now=at)
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
    metering.usage_report_run(now=at)
    generations(org, 170, at=at + timedelta(days=3), prefix="more")
    metering.usage_report_run(now=at + timedelta(days=3))
    preview = metering.invoice_preview(organization=org, now=at + timedelta(days=3))
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
    first = metering.usage_report_run(now=at)
    second = metering.usage_report_run(now=at + timedelta(minutes=5))
    assert (first.prepared, first.sent) == (1, 1)
    assert (second.prepared, second.sent) == (0, 0)
    assert stripe_usage(team) == 30


def test_a_crash_between_sending_and_recording_does_not_double_report(team, org, monkeypatch):
    at = team["start"] + timedelta(hours=1)
    generations(org, 42, at=at)

    def crash(**kwargs):
        raise RuntimeError("the process died here")

    record = metering.meter_report_record
    monkeypatch.setattr(reporting, "meter_report_record", crash)
    with pytest.raises(RuntimeError):
        metering.usage_report_run(now=at)
    report = MeterReport.objects.get()
    assert report.status == "pending"
    assert stripe_usage(team) == 42  # Stripe has it; Tally does not know yet

    monkeypatch.setattr(reporting, "meter_report_record", record)
    # The sender's lease runs out, and the next run sends the same report again.
    outcome = metering.usage_report_run(now=at + metering.LEASE + timedelta(seconds=1))
    assert (outcome.prepared, outcome.sent) == (0, 1)
    report.refresh_from_db()
    assert report.status == "sent"
    assert stripe_usage(team) == 42


def fail_meter_events(stripe_sim, *, status: int = 500, count: int = 1, after: bool = False) -> None:
    """Stripe answers the next `count` meter event calls with `status` (the simulator's fault
    control); `after` loses only the response, once Stripe has recorded the event."""
    response = requests.post(
        f"{settings.STRIPE_API_HOST}/_sim/faults",
        json={
            "path": "/v1/billing/meter_events",
            "status": status,
            "count": count,
            "after": after,
            # The SDK would retry a 5xx at once by itself; the outbox's own back-off is tested here.
            "should_retry": False,
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text


def sent_identifiers(stripe_sim) -> list[str]:
    with stripe_sim.store.lock:
        return sorted(stripe_sim.store.objects.get("billing.meter_event", {}))


def recorded(org) -> int:
    return UsageCounter.objects.get(organization=org, feature__key="ai_generations").used


def test_it_retries_with_back_off_when_stripe_fails(team, org, stripe_sim):
    at = team["start"] + timedelta(hours=1)
    generations(org, 5, at=at)
    fail_meter_events(stripe_sim, status=503)
    outcome = metering.usage_report_run(now=at)
    assert outcome.retrying == 1
    report = MeterReport.objects.get()
    assert (report.status, report.attempts) == ("pending", 1)
    assert report.next_attempt_at > at
    assert "simulated fault" in report.last_error
    # Not due yet: nothing is sent.
    assert metering.usage_report_send(now=at + timedelta(seconds=1)).retrying == 0
    assert metering.usage_report_send(now=report.next_attempt_at).sent == 1
    assert stripe_usage(team) == 5
    assert sent_identifiers(stripe_sim) == [report.identifier]


def test_a_report_that_ran_out_of_retries_is_retried_until_stripe_has_the_usage(team, org, stripe_sim):
    at = team["start"] + timedelta(hours=1)
    generations(org, 40, at=at)
    fail_meter_events(stripe_sim, count=metering.MAX_ATTEMPTS)
    metering.usage_report_run(now=at)
    report = MeterReport.objects.get()
    while report.status == "pending":
        metering.usage_report_send(now=report.next_attempt_at)
        report.refresh_from_db()
    assert (report.status, report.attempts) == ("failed", metering.MAX_ATTEMPTS)

    # Stripe is back. More usage comes in; the periodic job runs whenever it runs.
    generations(org, 10, at=report.next_attempt_at, prefix="later")
    metering.usage_report_run(now=report.next_attempt_at)

    assert stripe_usage(team) == recorded(org) == 50
    assert set(MeterReport.objects.values_list("status", flat=True)) == {"sent"}
    assert sent_identifiers(stripe_sim) == sorted(MeterReport.objects.values_list("identifier", flat=True))


def test_an_authentication_error_fails_at_once_and_is_retried_once_the_key_is_fixed(
    team, org, stripe_sim, settings
):
    at = team["start"] + timedelta(hours=1)
    generations(org, 7, at=at)
    good_key, settings.STRIPE_SECRET_KEY = settings.STRIPE_SECRET_KEY, "sk_test_rotated-and-revoked"
    outcome = metering.usage_report_run(now=at)
    assert (outcome.failed, outcome.retrying) == (1, 0)
    report = MeterReport.objects.get()
    assert (report.status, report.attempts) == ("failed", 1)
    assert "Invalid API Key" in report.last_error
    assert report.next_attempt_at > at  # backed off, not abandoned

    settings.STRIPE_SECRET_KEY = good_key
    outcome = metering.usage_report_run(now=report.next_attempt_at)

    assert (outcome.prepared, outcome.sent) == (0, 1)
    report.refresh_from_db()
    assert (report.status, report.last_error) == ("sent", "")
    assert stripe_usage(team) == recorded(org) == 7


def test_a_lost_response_is_resent_under_the_same_identifier_and_counted_once(team, org, stripe_sim):
    at = team["start"] + timedelta(hours=1)
    generations(org, 12, at=at)
    fail_meter_events(stripe_sim, status=500, after=True)
    assert metering.usage_report_run(now=at).retrying == 1
    assert stripe_usage(team) == 12  # Stripe has it; Tally was not told

    report = MeterReport.objects.get()
    assert metering.usage_report_run(now=report.next_attempt_at).sent == 1

    assert stripe_usage(team) == recorded(org) == 12
    assert sent_identifiers(stripe_sim) == [report.identifier]


def test_the_identifier_is_deterministic_per_org_feature_period_and_window(team, org):
    at = team["start"] + timedelta(hours=1)
    generations(org, 1, at=at)
    metering.usage_report_prepare(now=at)
    report = MeterReport.objects.get()
    start = team["start"].strftime("%Y%m%dT%H%M%S")
    assert report.identifier == f"tally-{org.pk}-ai_generations-{start}-1"


def test_the_command_reports(team, org, capsys):
    generations(org, 3, at=timezone.now())
    call_command("usage_report")
    assert "1 prepared, 1 sent" in capsys.readouterr().out


def test_free_plan_usage_is_not_reported(stripe_sim, org):
    metering.usage_ingest(organization=org, events=[{"id": "g", "meter": "ai_generations", "value": 2}])
    assert metering.usage_report_prepare() == 0


def test_staff_find_failed_reports_and_retry_them_from_the_admin(team, org, stripe_sim, settings, client):
    at = timezone.now()
    generations(org, 9, at=at)
    good_key, settings.STRIPE_SECRET_KEY = settings.STRIPE_SECRET_KEY, "sk_test_revoked-key"
    metering.usage_report_run(now=at)
    settings.STRIPE_SECRET_KEY = good_key
    report = MeterReport.objects.get()
    assert report.status == "failed" and report.next_attempt_at > timezone.now()
    url = reverse("admin:billing_meterreport_changelist")

    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    listed = client.get(url, {"delivery": "failed"})
    assert b"Acme" in listed.content and b"Invalid API Key" in listed.content
    assert b"Retry now" in listed.content
    assert b"0 meter reports" in client.get(url, {"delivery": "sent"}).content

    response = client.post(url, {"action": "retry_now", "_selected_action": [report.pk]}, follow=True)

    assert b"1 report(s) sent to Stripe" in response.content
    report.refresh_from_db()
    assert report.status == "sent"
    assert stripe_usage(team) == recorded(org) == 9
    # Retrying a sent report changes nothing, at Tally or at Stripe.
    client.post(url, {"action": "retry_now", "_selected_action": [report.pk]})
    assert stripe_usage(team) == 9 and sent_identifiers(stripe_sim) == [report.identifier]


def test_staff_who_may_only_view_reports_cannot_resend_them(client, db):
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_meterreport"))
    client.force_login(viewer)
    response = client.get(reverse("admin:billing_meterreport_changelist"))
    assert response.status_code == 200
    assert b"Retry now" not in response.content


def test_the_command_retries_failed_reports_now_when_asked(team, org, stripe_sim, capsys):
    generations(org, 4, at=timezone.now())
    fail_meter_events(stripe_sim, status=401)
    call_command("usage_report")
    assert "1 failed" in capsys.readouterr().out
    call_command("usage_report")
    assert "0 sent" in capsys.readouterr().out  # backed off
    call_command("usage_report", "--retry-now")
    assert "0 prepared, 1 sent" in capsys.readouterr().out
    assert stripe_usage(team) == recorded(org) == 4


@pytest.mark.django_db(transaction=True)
def test_two_schedulers_reporting_at_once_send_the_usage_once(team, org):
    at = team["start"] + timedelta(hours=1)
    generations(org, 30, at=at)

    outcomes = race(2, lambda _: metering.usage_report_run(now=at))

    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    assert sum(o.sent for o in outcomes) == 1
    assert stripe_usage(team) == 30
    assert report_usage.apply().get()["sent"] == 0  # and nothing is left for the next run
