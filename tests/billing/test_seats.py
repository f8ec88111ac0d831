"""Per-seat billing against the Stripe simulator: the quantity follows the team, each plan's
seat policy bills the change as documented, and the seat limit holds.

Subscriptions run on a test clock frozen at 1 April 2026, so prorated amounts are exact cents
(the README's worked example quotes them)."""

import io
from datetime import UTC, datetime, timedelta

import pytest
import stripe
from django.conf import settings
from django.core import mail
from django.core.cache import cache
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

import billing.seats.preview
import billing.seats.sync
from billing import entitlements, notifications, seats, selectors
from billing.catalog import catalog_push
from billing.entitlements.gating import EntitlementError
from billing.gateway.client import stripe_client
from billing.models import (
    EntitlementGrant,
    Feature,
    Notice,
    NoticeKind,
    OrgSubscription,
    Payment,
    Plan,
    SeatSyncDue,
)
from billing.seats import billable_seats
from billing.seats.schedule import SWEEP_AFTER, _scheduled_key
from config.celery import app
from teams import api_keys
from teams import services as team_services
from teams.models import Membership, Organization, Role
from tests.billing.conftest import subscribe
from tests.factories import InvitationFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

APRIL_1 = int(datetime(2026, 4, 1, tzinfo=UTC).timestamp())
APRIL_16 = int(datetime(2026, 4, 16, tzinfo=UTC).timestamp())  # 15 of April's 30 days left


@pytest.fixture
def catalog(stripe_sim):
    catalog_push()
    return stripe_client()


def subscribe_seats(org, plan_key: str) -> tuple[OrgSubscription, str]:
    """Subscribe `org` on a test clock at 1 April, one seat per member; returns the clock too."""
    clock = stripe_client().v1.test_helpers.test_clocks.create({"frozen_time": APRIL_1}).id
    quantity = billable_seats(org, plan=Plan.objects.get(key=plan_key))
    return subscribe(plan_key, organization=org, clock=clock, seats=quantity), clock


def seat_quantity(client, sub: OrgSubscription) -> int:
    remote = client.v1.subscriptions.retrieve(sub.stripe_subscription_id)
    line = sub.plan.seat_item()
    return billing.seats.sync._seat_item(remote, line).quantity


def next_invoice(client, sub: OrgSubscription) -> int:
    return client.v1.invoices.create_preview(
        {
            "customer": selectors.stripe_customer_id_of(sub.organization),
            "subscription": sub.stripe_subscription_id,
        }
    ).amount_due


def team(org, size: int) -> Membership:
    owner = MembershipFactory(organization=org, role=Role.OWNER, user__email=f"owner@{org.slug}.example.com")
    MembershipFactory.create_batch(size - 1, organization=org)
    return owner


def accept(org, email: str, capture) -> Membership:
    user = UserFactory(email=email)
    invitation = InvitationFactory(organization=org, email=email)
    with capture(execute=True):  # the seat sync runs once the acceptance commits
        return team_services.invitation_accept(invitation=invitation, user=user)


def remove(membership: Membership, actor: Membership, capture) -> None:
    with capture(execute=True):
        team_services.membership_remove(membership=membership, actor=actor)


def sim_quantity_updates(stripe_sim) -> list[dict]:
    return [
        r
        for r in stripe_sim.store.requests
        if r["method"] == "POST"
        and r["path"].startswith("/v1/subscription_items/")
        and r["status"] == 200
        and not r.get("replayed")
    ]


# --- The quantity follows the team ------------------------------------------------------------


def test_it_raises_the_quantity_on_accept_with_the_prorated_amount_previewed(
    catalog, org, stripe_sim, django_capture_on_commit_callbacks
):
    team(org, 3)
    sub, clock = subscribe_seats(org, "team_monthly")
    catalog.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": APRIL_16})

    preview = seats.seat_preview(organization=org, with_invoice=True)
    assert (preview.next_seat, preview.marginal, preview.tier_amount) == (4, 1500, 1500)
    assert preview.prorated == 750  # $15 for 15 of 30 days

    accept(org, "dora@example.com", django_capture_on_commit_callbacks)
    sub.refresh_from_db()
    assert seat_quantity(catalog, sub) == 4 and sub.seats == 4
    pending = catalog.v1.invoice_items.list({"customer": selectors.stripe_customer_id_of(org)})
    assert sum(ii.amount for ii in pending.data if ii.proration) == preview.prorated
    assert next_invoice(catalog, sub) == preview.upcoming.amount_due == 1500 + 750


def test_it_tells_the_contacts_of_a_seat_change_once(catalog, org, django_capture_on_commit_callbacks):
    team(org, 3)
    sub, _ = subscribe_seats(org, "team_monthly")
    mail.outbox.clear()
    accept(org, "dora@example.com", django_capture_on_commit_callbacks)
    (told,) = [m for m in mail.outbox if "seats" in m.subject]
    assert told.subject == "Acme now pays for 4 seats"
    assert told.to == ["owner@acme.example.com"]
    assert "went up from 3 to 4 seats" in told.body and "The seats now come to $15 per month." in told.body
    assert "See your team and billing: http" in told.body and "from 3 to 4 seats" in told.alternatives[0][0]
    # The same count reached again in the period (a retried or repeated sync) tells nothing more.
    notice = Notice.objects.get(kind=NoticeKind.SEAT_COUNT_CHANGED)
    sub.refresh_from_db()
    assert notice.key == f"seat_count_changed:{sub.stripe_subscription_id}:4:" + str(
        int(sub.current_period_start.timestamp())
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            notifications.seat_count_changed_queue(
                subscription=sub,
                plan=sub.plan,
                line=sub.plan.seat_item(),
                seats_from=3,
                seats_to=4,
                behavior="create_prorations",
            )
            is None
        )
    assert seats.seat_sync(organization_id=org.pk) is None
    assert len([m for m in mail.outbox if "seats" in m.subject]) == 1


def test_it_lowers_the_quantity_when_a_member_is_removed_or_leaves(
    catalog, org, django_capture_on_commit_callbacks
):
    owner = team(org, 5)
    sub, _ = subscribe_seats(org, "team_monthly")
    members = list(Membership.objects.filter(organization=org, role=Role.MEMBER))
    remove(members[0], owner, django_capture_on_commit_callbacks)
    assert seat_quantity(catalog, sub) == 4
    remove(members[1], members[1], django_capture_on_commit_callbacks)  # leaves
    sub.refresh_from_db()
    assert seat_quantity(catalog, sub) == 3 and sub.seats == 3


def test_a_change_whose_sync_task_was_lost_is_synced_by_the_sweep(
    catalog, org, django_capture_on_commit_callbacks
):
    # Found by the cluster soak: a worker killed while its seat sync waited out the delay left
    # the "scheduled" flag in the cache, so the next change scheduled nothing, and Stripe billed
    # the old count until the broker gave the task back an hour later.
    team(org, 2)
    sub, _ = subscribe_seats(org, "team_monthly")
    cache.add(_scheduled_key(org.pk), 1, timeout=300)  # what the lost task's schedule left
    accept(org, "dora@example.com", django_capture_on_commit_callbacks)
    assert seat_quantity(catalog, sub) == 2  # nothing was scheduled: one seemed to be waiting
    due = SeatSyncDue.objects.get(organization=org)
    assert seats.seat_syncs_sweep(now=due.since) == 0  # not late yet
    late = due.since + timedelta(seconds=settings.BILLING_SEAT_SYNC_DELAY) + SWEEP_AFTER
    with django_capture_on_commit_callbacks(execute=True):
        assert seats.seat_syncs_sweep(now=late + timedelta(seconds=1)) == 1
    assert seat_quantity(catalog, sub) == 3
    assert not SeatSyncDue.objects.filter(organization=org).exists()
    assert seats.seat_syncs_sweep(now=late + timedelta(hours=1)) == 0


def test_a_sync_keeps_the_note_of_a_change_made_after_it_read_the_count(catalog, org):
    team(org, 2)
    subscribe_seats(org, "team_monthly")
    SeatSyncDue.objects.create(
        organization=org, since=timezone.now(), last=timezone.now() + timedelta(seconds=5)
    )
    seats.seat_sync(organization_id=org.pk)
    assert SeatSyncDue.objects.filter(organization=org).exists()
    SeatSyncDue.objects.filter(organization=org).update(last=timezone.now() - timedelta(seconds=1))
    seats.seat_sync(organization_id=org.pk)
    assert not SeatSyncDue.objects.filter(organization=org).exists()


def test_the_sweep_is_a_periodic_job_and_a_command(catalog, org):
    assert (
        settings.CELERY_BEAT_SCHEDULE["billing-seat-syncs-sweep"]["task"] == "billing.tasks.seat_syncs_sweep"
    )
    out = io.StringIO()
    call_command("seat_syncs_sweep", stdout=out)
    assert out.getvalue().strip() == "queued 0 seat syncs"


def test_it_sends_nothing_when_stripe_already_has_the_count(catalog, org, stripe_sim):
    team(org, 3)
    subscribe_seats(org, "team_monthly")
    assert seats.seat_sync(organization_id=org.pk) is None
    assert seats.seat_sync(organization_id=org.pk) is None  # and again: still nothing
    assert sim_quantity_updates(stripe_sim) == []


def test_a_seat_change_after_stripe_ended_the_subscription_reads_it_back(catalog, org, stripe_sim):
    # Canceled from Stripe's dashboard, its webhook late; then the team changes.
    team(org, 3)
    sub, _ = subscribe_seats(org, "team_monthly")
    catalog.v1.subscriptions.cancel(sub.stripe_subscription_id)
    MembershipFactory(organization=org)
    assert seats.seat_sync(organization_id=org.pk) is None
    assert sim_quantity_updates(stripe_sim) == []
    assert OrgSubscription.objects.get(organization=org).status == "canceled"


def test_the_three_seat_policies_bill_as_documented(catalog, django_capture_on_commit_callbacks):
    """The README's worked example, in cents."""
    # prorate (Team monthly): seat 4 added on 16 April -> +$7.50 on the 1 May invoice.
    prorate = Organization.objects.create(name="Prorate", slug="prorate")
    owner = team(prorate, 3)
    sub, clock = subscribe_seats(prorate, "team_monthly")
    catalog.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": APRIL_16})
    added = accept(prorate, "p4@example.com", django_capture_on_commit_callbacks)
    assert next_invoice(catalog, sub) == 1500 + 750
    remove(added, owner, django_capture_on_commit_callbacks)  # and removed the same day: credited
    assert next_invoice(catalog, sub) == 0

    # invoice (Team yearly): seat 4 added on 16 April -> an invoice paid at once.
    invoice = Organization.objects.create(name="Invoice", slug="invoice")
    team(invoice, 3)
    sub, clock = subscribe_seats(invoice, "team_yearly")
    catalog.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": APRIL_16})
    accept(invoice, "i4@example.com", django_capture_on_commit_callbacks)
    remote = catalog.v1.subscriptions.retrieve(sub.stripe_subscription_id)
    paid = catalog.v1.invoices.retrieve(remote.latest_invoice)
    assert (paid.billing_reason, paid.status, paid.amount_paid) == ("subscription_update", "paid", 14384)
    assert next_invoice(catalog, sub) == 15000  # the next year: 3 free seats + one at $150

    # renewal (Platform): 6 members, one removed on 16 April -> no credit, $49 from 1 May.
    renewal = Organization.objects.create(name="Renewal", slug="renewal")
    owner = team(renewal, 6)
    sub, clock = subscribe_seats(renewal, "platform_monthly")
    assert Payment.objects.get(organization=renewal).amount_paid == 4900 + 1000
    catalog.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": APRIL_16})
    remove(
        Membership.objects.filter(organization=renewal, role=Role.MEMBER).first(),
        owner,
        django_capture_on_commit_callbacks,
    )
    assert seat_quantity(catalog, sub) == 5
    assert next_invoice(catalog, sub) == 4900
    added = accept(renewal, "r6@example.com", django_capture_on_commit_callbacks)
    assert next_invoice(catalog, sub) == 4900 + 1000 + 500  # seat 6 again, prorated from today


def test_the_minimum_is_billed_however_small_the_team(catalog, org):
    team(org, 2)
    plan = Plan.objects.get(key="team_monthly")
    Plan.objects.filter(pk=plan.pk).update(seat_minimum=3)
    assert billable_seats(org, plan=Plan.objects.get(pk=plan.pk)) == 3


def test_roles_outside_the_seat_roles_are_not_billed(org, settings):
    team(org, 2)
    MembershipFactory(organization=org, role=Role.BILLING)
    settings.BILLING_SEAT_ROLES = ["owner", "admin", "member"]
    assert billable_seats(org) == 2


# --- Seat limits ----------------------------------------------------------------------------


def test_inviting_past_the_limit_is_refused_with_an_upgrade_prompt(client_for, org, owner, member):
    # Free: three members. Two are in, one invitation takes the third seat.
    client = client_for(owner)
    url = reverse("invitation_create", args=[org.slug])
    assert client.post(url, {"email": "dora@example.com", "role": "member"}).status_code == 302
    refused = client.post(url, {"email": "erin@example.com", "role": "member"}, HTTP_HX_REQUEST="true")
    html = refused.content.decode()
    assert "Acme has 2 of its 3 member seats taken and 1 invitation is open." in html
    assert 'data-testid="upgrade-prompt"' in html and "<strong>Team (monthly)</strong> allows it" in html
    assert not org.invitations.filter(email="erin@example.com").exists()


def test_a_seat_pack_makes_room_for_five_more(org, owner, member):
    team_services.invitation_create(organization=org, actor=owner, email="dora@example.com")
    with pytest.raises(EntitlementError):
        team_services.invitation_create(organization=org, actor=owner, email="erin@example.com")
    grant = EntitlementGrant.objects.create(
        feature=Feature.objects.get(key="team_members"), source="addon", amount=5, reference="pack"
    )
    grant.organizations.add(org)
    entitlements.invalidate(org)
    for n in range(5):
        team_services.invitation_create(organization=org, actor=owner, email=f"new{n}@example.com")
    with pytest.raises(EntitlementError):
        team_services.invitation_create(organization=org, actor=owner, email="one-too-many@example.com")


def test_accepting_past_the_limit_is_refused_and_changes_nothing(client_for, org, owner, member, admin):
    # Invited before the organization was full (e.g. before a downgrade).
    invitation = InvitationFactory(organization=org, email="dora@example.com")
    dora = UserFactory(email="dora@example.com")
    page = client_for(dora).post(reverse("invitation_accept", args=[invitation.token]))
    assert page.status_code == 402
    assert b"Acme has 3 of its 3 member seats taken." in page.content
    assert b'data-testid="upgrade-prompt"' in page.content
    invitation.refresh_from_db()
    assert invitation.status == "pending" and org.memberships.count() == 3


# --- Reconciliation and deletion ------------------------------------------------------------


def test_reconcile_compares_the_seat_quantity_with_billable_members(catalog, org, capsys):
    team(org, 3)
    sub, _ = subscribe_seats(org, "team_monthly")
    MembershipFactory.create_batch(2, organization=org)  # no commit hook here: a lost sync
    call_command("billing_reconcile")
    assert "acme: billable seats is 5 here, 3 in Stripe" in capsys.readouterr().out
    call_command("billing_reconcile", "--fix")
    assert seat_quantity(catalog, sub) == 5
    call_command("billing_reconcile")
    assert "Every subscription matches Stripe." in capsys.readouterr().out


def test_deleting_an_organization_cancels_at_once_and_keeps_billing_records(
    catalog, client_for, org, django_capture_on_commit_callbacks
):
    owner = team(org, 3)
    sub, _ = subscribe_seats(org, "platform_monthly")
    payments = list(Payment.objects.filter(organization=org).values_list("stripe_invoice_id", flat=True))
    client = client_for(owner.user)
    url = reverse("organization_delete", args=[org.slug])

    wrong = client.post(url, {"confirm": "acme"}, follow=True)
    assert "name, Acme, to confirm." in wrong.content.decode()
    assert Organization.objects.get(pk=org.pk).deleted_at is None

    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(url, {"confirm": "Acme"})
    assert done.status_code == 302
    sub.refresh_from_db()
    assert sub.status == "canceled"
    assert catalog.v1.subscriptions.retrieve(sub.stripe_subscription_id).status == "canceled"
    assert (
        list(Payment.objects.filter(organization=org).values_list("stripe_invoice_id", flat=True)) == payments
    )
    deleted = Organization.objects.get(pk=org.pk)
    assert deleted.deleted_at and deleted.slug != "acme" and not deleted.memberships.exists()
    # Gone from the switcher and from every page; the address is free again.
    assert client.get(reverse("dashboard", args=["acme"])).status_code == 404
    assert client.get(reverse("dashboard", args=[deleted.slug])).status_code == 404
    switcher = client.get(reverse("home"), follow=True).context["nav_organizations"]
    assert org.pk not in [o.pk for o in switcher]
    again = team_services.organization_create(owner=owner.user, name="Acme")
    assert again.slug == "acme"


def test_only_an_owner_deletes_and_never_a_personal_workspace(client_for, org, owner, admin):
    response = client_for(admin).post(reverse("organization_delete", args=[org.slug]), {"confirm": "Acme"})
    assert response.status_code == 403
    personal = Organization.objects.create(name="Alice's workspace", slug="alice", is_personal=True)
    mine = MembershipFactory(
        organization=personal, user=Membership.objects.get(user=owner).user, role=Role.OWNER
    )
    with pytest.raises(team_services.ServiceError) as error:
        team_services.organization_delete(organization=personal, actor=mine, confirm="Alice's workspace")
    assert error.value.code == "personal_workspace"
    assert Organization.objects.alive().count() == 2


def test_a_deleted_organizations_api_key_stops_working(api_client, org, owner):
    _, secret = api_keys.api_key_create(organization=org, actor=owner, name="server")
    team_services.organization_delete(
        organization=org, actor=Membership.objects.get(user=owner), confirm="Acme"
    )
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert api_client.get("/api/v1/projects/").status_code == 401


# --- The preview on the members page -----------------------------------------------------------


def test_the_members_page_previews_the_next_seat(client_for, catalog, org):
    owner = team(org, 3)
    subscribe_seats(org, "team_monthly")
    client = client_for(owner.user)
    page = client.get(reverse("members", args=[org.slug])).content.decode()
    assert reverse("billing_seat_preview", args=[org.slug]) in page
    fragment = client.get(reverse("billing_seat_preview", args=[org.slug]), HTTP_HX_REQUEST="true")
    text = " ".join(fragment.content.decode().split())
    assert "Adding a member: <strong>+$15/month</strong>" in text
    assert "(seat 4, tier $15)" in text
    assert 'data-testid="seat-invoice"' in text


def test_the_seat_preview_falls_back_to_the_tiers_when_stripe_fails(client_for, catalog, org, monkeypatch):
    owner = team(org, 3)
    subscribe_seats(org, "team_monthly")

    def down(*args, **kwargs):
        raise stripe.APIConnectionError("Stripe is unreachable")

    monkeypatch.setattr(billing.seats.preview, "_invoice_after", down)
    fragment = client_for(owner.user).get(reverse("billing_seat_preview", args=[org.slug]))
    assert b"(seat 4, tier $15)" in fragment.content and b"Stripe did not answer" in fragment.content


def test_a_seat_sync_stripe_refuses_never_fails_the_joining_in_process(
    catalog, org, stripe_sim, django_capture_on_commit_callbacks
):
    """Found by the lifecycle machine: with tasks in-process (the demo), Stripe down during the
    seat sync turned a committed acceptance into an error for the person who joined."""
    team(org, 2)
    sub, _ = subscribe_seats(org, "team_monthly")
    stripe_sim.store.config.outage = {"status": 500, "paths": [], "remaining": -1}
    previous, app.conf.task_eager_propagates = app.conf.task_eager_propagates, False
    try:
        joined = accept(org, "dora@example.com", django_capture_on_commit_callbacks)
    finally:
        app.conf.task_eager_propagates = previous
        stripe_sim.store.config.outage = None
    assert joined.organization == org and Membership.objects.filter(organization=org).count() == 3
    assert seat_quantity(catalog, sub) == 2  # Stripe was down; billing_reconcile repairs it
