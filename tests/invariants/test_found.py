"""Defects the lifecycle machine found, each as a plain regression test."""

import pytest
import requests

from billing import catalog, seats, subscriptions
from billing.gateway.client import stripe_client
from billing.models import OrgSubscription, Plan
from billing.webhooks import dispatch
from credits import reconcile as credit_reconcile
from credits import services as credit_services
from credits.models import CreditAccount, CreditGrant, CreditReservation, CreditTransaction
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


def test_it_bills_the_members_who_joined_while_checkout_was_open(
    stripe_sim, org, owner, django_capture_on_commit_callbacks
):
    # Found by the machine: start_checkout(team_monthly), member_joins, pay_checkout left Stripe
    # billing 1 seat for 2 members until some later membership change happened to sync seats.
    catalog.catalog_push()
    url = subscriptions.checkout_start(
        organization=org, plan=Plan.objects.get(key="team_monthly"), actor=owner
    )
    with django_capture_on_commit_callbacks(execute=True):
        MembershipFactory(organization=org)  # joins while the checkout page is open
    paid = requests.post(url, data={"card_number": "4242424242424242"}, allow_redirects=False, timeout=30)
    assert paid.status_code == 303

    with django_capture_on_commit_callbacks(execute=True):
        dispatch.handle("evt_checkout", "checkout.session.completed", url.rsplit("/", 1)[-1])

    local = OrgSubscription.objects.get(organization=org)
    remote = stripe_client().v1.subscriptions.retrieve(local.stripe_subscription_id)
    seat_item = next(i for i in remote["items"].data if (i.price.metadata or {}).get("tally_item") == "seats")
    assert seat_item.quantity == 2
    assert local.seats == 2


def test_it_counts_a_paid_periods_allowance_after_the_subscription_ended(machine):
    # Seed 13 (before this fix): I3 took invoices whose payments a list leaves out for
    # "refunded in full", so a paid period's allowance stopped counting once canceled.
    machine.subscribe(plan="pro_monthly", declined=False)
    machine.time_passes(days=15, deliver=True)  # the trial ends and the first month is paid
    machine.cancel_now_from_the_dashboard(which=0, deliver=True)
    machine.i3_nothing_spendable_unpaid()
    [sub] = machine._all_subscriptions()
    assert sub.status == "canceled"
    invoices = list(machine.stripe.v1.invoices.list({"subscription": sub.id}).auto_paging_iter())
    [renewal] = [i for i in invoices if i.billing_reason == "subscription_cycle"]
    charges = credit_reconcile._charges_by_intent(machine.customer)
    start = renewal.lines.data[0].period.start
    assert credit_reconcile._period_due(invoices, charges, start, 1_000, live=False) == 1_000


def test_it_keeps_the_seats_in_step_while_a_downgrade_waits_for_the_period_end(machine):
    # Seed 1985021198 (before this fix): during Pro's trial the owner moved to Team, which Stripe
    # bills per seat from now on while Tally keeps Pro until the period it was paid for ends. A
    # member joined and the seat sync looked at Pro, found no seat item and sent nothing: Stripe
    # billed 3 seats for 4 members.
    machine.subscribe(plan="pro_monthly", declined=False)
    machine.change_plan(plan="team_monthly", deliver=True)
    local = OrgSubscription.objects.get(organization=machine.org)
    assert local.plan.key == "pro_monthly" and local.pending_plan.key == "team_monthly"
    # What one more member costs is priced by the plan Stripe bills seats by.
    preview = seats.seat_preview(organization=machine.org)
    assert preview is not None and preview.plan.key == "team_monthly"
    machine.member_joins()
    machine.seat_sync_runs()
    machine.i5_seats_match()
    remote = stripe_client().v1.subscriptions.retrieve(local.stripe_subscription_id)
    seat_item = next(i for i in remote["items"].data if (i.price.metadata or {}).get("tally_item") == "seats")
    team = Plan.objects.get(key="team_monthly")
    assert seat_item.quantity == seats.billable_seats(machine.org, plan=team)


def test_a_new_subscription_does_not_inherit_the_pending_downgrade_of_the_one_it_replaced(machine):
    # Seed 4102454894 (before this fix): a downgrade to Team waited for the end of Pro's period;
    # Pro was then ended early and the organization subscribed to Team afresh. The new
    # subscription's record kept the old one's pending change and granted Pro until a period
    # start that never comes: Stripe billed Team, Tally granted Pro.
    machine.subscribe(plan="pro_monthly", declined=False)
    machine.change_plan(plan="team_monthly", deliver=True)
    assert OrgSubscription.objects.get(organization=machine.org).pending_plan.key == "team_monthly"
    machine.cancel_now_from_the_dashboard(which=0, deliver=True)
    machine.subscribe(plan="team_monthly", declined=False)
    local = OrgSubscription.objects.get(organization=machine.org)
    assert (local.plan.key, local.pending_plan, local.status) == ("team_monthly", None, "active")
    machine.i6_entitlements_match_the_model()


def test_the_model_turns_read_only_when_a_disputed_subscription_payments_grace_ends(machine):
    # Seed 2292767947: the model still expected generations after the first payment of
    # ai_monthly was disputed and a day passed; Tally (rightly) answered `restricted`. The model
    # now reads the rule from Stripe's disputes and invoices, and judges both sides of it.
    machine.subscribe_then_disputed(plan="ai_monthly")
    assert machine._expected("ai_generations", 1) is True  # within the grace period
    machine.use_generations(amount=1)
    machine.time_passes(days=1, deliver=True)
    assert machine._expected("ai_generations", 1) is False
    machine.use_generations(amount=1)  # asserts Tally agrees: restricted
    machine.i6_entitlements_match_the_model()


def test_a_subscription_whose_period_starts_at_the_same_instant_shares_its_usage_count(machine):
    # Seed 671351421: Pro canceled from the dashboard and bought again with no time passing (the
    # test clock was frozen). The new period starts at the very instant the old one did, so it is
    # the same usage period, as Stripe's meter windows (per customer and time range) see it: the
    # 5 generations count in both. The model had keyed periods by subscription as well.
    machine.subscribe_then_disputed(plan="pro_monthly")
    machine.use_generations(amount=5)
    machine.cancel_now_from_the_dashboard(which=0, deliver=True)
    machine.subscribe_then_disputed(plan="pro_monthly")
    assert machine.model.used(machine._regime()) == 5
    machine.i6_entitlements_match_the_model()


def test_a_counter_a_new_plan_bills_is_owed_to_stripe_from_the_next_report_run(machine):
    # Seed 2581766653: a generation used on Pro (which does not bill it), then Team bought in the
    # same frozen instant. The period is shared (see above), so Team's meter owes that generation;
    # the machine had checked I4 before any report run since the plan changed, and took the
    # report still to come for a missing one.
    from billing import reconcile

    machine.subscribe_then_disputed(plan="pro_monthly")
    machine.use_generations(amount=1)
    machine.report_usage()
    machine.cancel_now_from_the_dashboard(which=0, deliver=True)
    machine.subscribe_then_disputed(plan="team_monthly")
    assert machine._local().plan.key == "team_monthly"
    owed = reconcile.meters_check(organizations=[machine.org])
    assert [b.detail.split(": ", 1)[1] for b in owed] == [
        "Stripe has 0, Tally recorded 1 (0 report(s) not sent)"
    ]
    machine.i4_meters_match()  # not yet judged: no report since the plan changed
    machine.report_usage()
    assert reconcile.meters_check(organizations=[machine.org]) == []
    machine.i4_meters_match()


def test_a_hold_released_after_its_grant_expired_does_not_make_those_credits_spendable(machine):
    # Seed 3952417383: 600 held during Pro's trial (500 welcome bonus + 100 of the trial's
    # allowance), then the subscription was canceled from the dashboard. The allowance expired
    # except the 100 the hold kept; when the hold was cancelled those 100 came back as available
    # and stayed so until the periodic expiry job ran.
    machine.subscribe(plan="pro_monthly", declined=False)
    machine.cancel_now_from_the_dashboard(which=0, deliver=False)
    hold = machine.reserve(amount=600)
    machine.member_joins()  # delivers what Stripe sent: the cancellation
    account = CreditAccount.objects.get(organization=machine.org)
    assert (account.balance, account.held) == (600, 600)
    machine.cancel_hold(reservation=hold)
    machine.i3_nothing_spendable_unpaid()
    account.refresh_from_db()
    assert (account.balance, account.held, account.available) == (500, 0, 500)
    expiry = CreditTransaction.objects.filter(account=account, type="expiry").order_by("pk")
    assert [e.amount for e in expiry] == [-900, -100]


def test_what_a_partly_confirmed_hold_gives_back_from_an_expired_grant_expires_at_once(machine):
    # The same shape through confirm: what a hold gives back is released, and credits of a grant
    # that expired while they were held go with the release, not at the next expiry job.
    machine.subscribe(plan="pro_monthly", declined=False)
    machine.cancel_now_from_the_dashboard(which=0, deliver=False)
    hold = machine.reserve(amount=1_400)  # 500 bonus + 900 of the allowance
    machine.member_joins()
    account = CreditAccount.objects.get(organization=machine.org)
    assert (account.balance, account.held) == (1_400, 1_400)
    credit_services.credit_reservation_confirm(reservation=CreditReservation.objects.get(pk=hold), amount=300)
    machine.i3_nothing_spendable_unpaid()
    account.refresh_from_db()
    # The 300 used come from the allowance, the soonest to expire when it was held, not from the
    # bonus: confirming late must not cost the customer credits. The other 600 of it expire.
    assert (account.balance, account.held, account.available) == (500, 0, 500)
    [bonus] = CreditGrant.objects.filter(account=account, source="bonus")
    assert bonus.remaining == 500
