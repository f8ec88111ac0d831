"""Checkout, plan changes, cancellation, refunds and reconciliation against the simulator.

Subscriptions here are created through the Stripe API and recorded with `subscription_sync`, as
the webhook would; the webhook path itself is covered by test_lifecycle.py."""

import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from billing import entitlements, subscriptions
from billing.catalog import catalog_push
from billing.gateway.client import stripe_client
from billing.models import Addon, OrgSubscription, Payment, Plan
from common.errors import ServiceError
from teams import api_keys
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog(stripe_sim):
    catalog_push()
    return stripe_client()


# --- Checkout -----------------------------------------------------------------------------


def test_checkout_carries_the_plan_seats_addons_and_the_organization(catalog, org, owner):
    MembershipFactory.create_batch(4, organization=org)
    url = subscriptions.checkout_start(
        organization=org,
        plan=Plan.objects.get(key="team_monthly"),
        actor=owner,
        addons={Addon.objects.get(key="premium_onboarding"): 1},
    )
    session_id = url.rsplit("/", 1)[-1]
    session = catalog.v1.checkout.sessions.retrieve(session_id)
    assert (session.mode, session.client_reference_id) == ("subscription", str(org.pk))
    assert session.metadata["tally_plan"] == "team_monthly"
    assert session.success_url.endswith("/o/acme/billing/success/?session_id={CHECKOUT_SESSION_ID}")
    lines = {
        line.price.id: line.quantity for line in catalog.v1.checkout.sessions.line_items.list(session_id).data
    }
    seats = Plan.objects.get(key="team_monthly").line_items.get(key="seats").stripe_price_id
    onboarding = Addon.objects.get(key="premium_onboarding").stripe_price_id
    assert lines[seats] == 5 and lines[onboarding] == 1
    assert len(lines) == 3  # seats, metered AI generations, the add-on


def test_only_billing_roles_start_checkout(client_for, catalog, org, member, billing_manager):
    url = reverse("billing_checkout", args=[org.slug])
    assert client_for(member).post(url, {"plan": "pro_monthly"}).status_code == 403
    response = client_for(billing_manager).post(url, {"plan": "pro_monthly"})
    assert response.status_code == 302 and "/checkout/cs_" in response.url


def test_checkout_refuses_bad_choices_with_a_message(client_for, catalog, org, owner):
    client = client_for(owner)
    url = reverse("billing_checkout", args=[org.slug])
    for data in (
        {"plan": "free"},
        {"plan": "enterprise"},
        {"plan": "nope"},
        {"plan": "pro_monthly", "addon_extra_seats": "99"},
    ):
        response = client.post(url, data, follow=True)
        assert response.redirect_chain[-1][0] == reverse("billing", args=[org.slug])
        assert b'class="error"' in response.content, data
    assert catalog.v1.checkout.sessions.list().data == []


def test_a_subscribed_organization_changes_plan_instead(catalog, org, owner, subscribed):
    subscribed("pro_monthly")
    with pytest.raises(ServiceError) as error:
        subscriptions.checkout_start(organization=org, plan=Plan.objects.get(key="ai_monthly"), actor=owner)
    assert error.value.code == "already_subscribed"


def test_the_success_page_waits_for_the_webhook(client_for, catalog, org, owner):
    url = subscriptions.checkout_start(organization=org, plan=Plan.objects.get(key="ai_monthly"), actor=owner)
    session_id = url.rsplit("/", 1)[-1]
    import requests

    requests.post(url, data={"card_number": "4242424242424242"}, allow_redirects=False, timeout=30)
    page = client_for(owner).get(reverse("billing_success", args=[org.slug]), {"session_id": session_id})
    assert b"Activating your subscription" in page.content
    assert b'hx-trigger="every 1s"' in page.content
    subscriptions.checkout_complete(session_id=session_id)  # the webhook arrives
    poll = client_for(owner).get(
        reverse("billing_success", args=[org.slug]), {"session_id": session_id}, HTTP_HX_REQUEST="true"
    )
    assert b"You're on AI Access (monthly)" in poll.content
    assert b"every 1s" not in poll.content


def test_the_success_page_rejects_another_orgs_session(client_for, catalog, org, owner, outsider):
    url = subscriptions.checkout_start(organization=org, plan=Plan.objects.get(key="ai_monthly"), actor=owner)
    theirs = client_for(outsider)
    from teams.models import Membership

    their_org = Membership.objects.get(user=outsider).organization
    response = theirs.get(
        reverse("billing_success", args=[their_org.slug]), {"session_id": url.rsplit("/", 1)[-1]}
    )
    assert response.status_code == 404


# --- Changes ------------------------------------------------------------------------------


def test_an_upgrade_applies_now_and_charges_the_prorated_difference(
    client_for, catalog, org, owner, subscribed
):
    subscribed("ai_monthly")
    client = client_for(owner)
    page = client.get(reverse("billing_change", args=[org.slug]), {"plan": "pro_monthly"})
    assert b"The change applies now" in page.content
    preview = page.context["preview"]
    assert preview.immediate and 0 < preview.amount_due <= 4900 - 500 + 1
    client.post(reverse("billing_change", args=[org.slug]), {"plan": "pro_monthly"})
    sub = OrgSubscription.objects.get(organization=org)
    assert sub.plan.key == "pro_monthly" and sub.pending_plan is None
    remote = catalog.v1.subscriptions.retrieve(sub.stripe_subscription_id)
    invoice = catalog.v1.invoices.retrieve(remote.latest_invoice)
    assert invoice.billing_reason == "subscription_update"
    assert invoice.amount_paid == preview.amount_due


def test_a_downgrade_waits_for_the_end_of_the_paid_period(catalog, org, owner, subscribed):
    clock = catalog.v1.test_helpers.test_clocks.create({"frozen_time": int(time.time())})
    subscribed("pro_monthly", clock=clock.id)
    preview = subscriptions.subscription_change_preview(
        organization=org, plan=Plan.objects.get(key="ai_monthly")
    )
    assert not preview.immediate and preview.amount_due == 500
    sub = subscriptions.subscription_change(
        organization=org, plan=Plan.objects.get(key="ai_monthly"), actor=owner
    )
    assert (sub.plan.key, sub.pending_plan.key) == ("pro_monthly", "ai_monthly")
    end = int(sub.current_period_end.timestamp())
    catalog.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": end + 60})
    sub = subscriptions.subscription_sync(subscription_id=sub.stripe_subscription_id)
    assert (sub.plan.key, sub.pending_plan) == ("ai_monthly", None)
    renewal = catalog.v1.invoices.retrieve(
        catalog.v1.subscriptions.retrieve(sub.stripe_subscription_id).latest_invoice
    )
    assert renewal.amount_paid == 500


def test_switching_to_yearly_applies_now(catalog, org, owner, subscribed):
    subscribed("pro_monthly")
    sub = subscriptions.subscription_change(
        organization=org, plan=Plan.objects.get(key="pro_yearly"), actor=owner
    )
    assert sub.plan.key == "pro_yearly"
    assert sub.current_period_end - sub.current_period_start > timedelta(days=360)


def test_cancel_at_period_end_and_resume(client_for, catalog, org, owner, subscribed):
    subscribed("pro_monthly")
    client = client_for(owner)
    client.post(reverse("billing_cancel", args=[org.slug]))
    sub = OrgSubscription.objects.get(organization=org)
    assert sub.cancel_at_period_end and sub.status == "active"
    assert b"Keep my subscription" in client.get(reverse("billing", args=[org.slug])).content
    client.post(reverse("billing_resume", args=[org.slug]))
    assert not OrgSubscription.objects.get(organization=org).cancel_at_period_end


_CHANGES = {
    "resume": lambda org, owner: subscriptions.subscription_resume(organization=org, actor=owner),
    "cancel": lambda org, owner: subscriptions.subscription_cancel(organization=org, actor=owner),
    "change": lambda org, owner: subscriptions.subscription_change(
        organization=org, plan=Plan.objects.get(key="ai_monthly"), actor=owner
    ),
    "preview": lambda org, owner: subscriptions.subscription_change_preview(
        organization=org, plan=Plan.objects.get(key="ai_monthly")
    ),
}


@pytest.mark.parametrize("change", sorted(_CHANGES))
def test_a_change_to_a_subscription_that_ended_unbeknown_to_tally_is_refused(
    catalog, org, owner, subscribed, change
):
    # Canceled from Stripe's dashboard; its webhook is late. Stripe refuses the change: Tally
    # reads the subscription back and answers as it would have, had the webhook come first.
    sub = subscribed("pro_monthly")
    catalog.v1.subscriptions.cancel(sub.stripe_subscription_id)
    with pytest.raises(ServiceError) as refused:
        _CHANGES[change](org, owner)
    assert refused.value.code == "no_subscription"
    assert OrgSubscription.objects.get(organization=org).status == "canceled"
    assert entitlements.check(org, "projects", 0).limit == 2  # back on Free


def test_keeping_a_subscription_that_ended_unbeknown_to_tally_says_so(
    client_for, catalog, org, owner, subscribed
):
    sub = subscribed("pro_monthly")
    subscriptions.subscription_cancel(organization=org, actor=owner)
    catalog.v1.subscriptions.cancel(sub.stripe_subscription_id)
    response = client_for(owner).post(reverse("billing_resume", args=[org.slug]), follow=True)
    assert response.status_code == 200
    assert b"no active subscription" in response.content


def test_a_member_cannot_change_billing(client_for, catalog, org, owner, member, subscribed):
    subscribed("pro_monthly")
    client = client_for(member)
    for name in ("billing_cancel", "billing_portal", "billing_refund"):
        assert client.post(reverse(name, args=[org.slug])).status_code == 403
    assert client.get(reverse("billing_change", args=[org.slug]), {"plan": "ai_monthly"}).status_code == 403
    assert not OrgSubscription.objects.get(organization=org).cancel_at_period_end


def test_the_owner_cancels_with_a_full_refund_inside_the_window(client_for, catalog, org, owner, subscribed):
    subscribed("pro_monthly")
    client_for(owner).post(reverse("billing_refund", args=[org.slug]))
    sub = OrgSubscription.objects.get(organization=org)
    assert sub.status == "canceled"
    payment = Payment.objects.get(organization=org)
    assert (payment.status, payment.amount_refunded) == ("refunded", 4900)
    charge = catalog.v1.charges.retrieve(payment.stripe_charge_id)
    assert charge.amount_refunded == 4900
    assert entitlements.check(org, "projects", 0).limit == 2  # back on Free


def test_the_refund_window_closes(catalog, org, owner, billing_manager, client_for, subscribed):
    subscribed("pro_monthly")
    assert (
        client_for(billing_manager).post(reverse("billing_refund", args=[org.slug])).status_code == 403
    )  # owners only
    later = timezone.now() + timedelta(days=8)
    with pytest.raises(ServiceError) as error:
        subscriptions.subscription_refund_and_cancel(organization=org, actor=owner, now=later)
    assert error.value.code == "refund_window_closed"
    assert OrgSubscription.objects.get(organization=org).status == "active"


def test_the_portal_opens_for_the_organizations_customer(client_for, catalog, org, owner, subscribed):
    subscribed("pro_monthly")
    response = client_for(owner).post(reverse("billing_portal", args=[org.slug]))
    assert response.status_code == 302 and "/portal/" in response.url


def test_the_billing_page_shows_the_subscription(client_for, catalog, org, owner, member, subscribed):
    subscribed("pro_monthly")
    page = client_for(member).get(reverse("billing", args=[org.slug]))
    html = page.content.decode()
    assert "Pro (monthly)" in html and "2 used · 1 paid" in html
    assert "Cancel at period end" not in html  # members see, but do not act
    upcoming = client_for(member).get(reverse("billing_upcoming", args=[org.slug]))
    assert "$49" in upcoming.content.decode()


def test_a_failed_payment_shows_a_banner_to_members_only(
    client_for, catalog, org, owner, outsider, subscribed
):
    sub = subscribed("pro_monthly")
    OrgSubscription.objects.filter(pk=sub.pk).update(
        status="past_due", grace_until=timezone.now() + timedelta(hours=20)
    )
    page = client_for(owner).get(reverse("dashboard", args=[org.slug]))
    assert b'data-testid="billing-banner"' in page.content
    assert b"Everything keeps working until" in page.content
    assert b"billing-banner" not in client_for(outsider).get(reverse("dashboard", args=[org.slug])).content


# --- API ----------------------------------------------------------------------------------


@pytest.fixture
def key_client(api_client, org, owner):
    _, secret = api_keys.api_key_create(organization=org, actor=owner, name="server")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return api_client


def test_the_status_api_reports_plan_access_and_quotas(key_client, catalog, org, subscribed):
    subscribed("pro_monthly")
    body = key_client.get("/api/v1/billing/status").json()
    assert (body["plan"], body["status"], body["access"]) == ("pro_monthly", "active", "full")
    assert body["quotas"]["api_calls"]["limit"] == 10_000
    assert body["period_end"]


def test_the_checkout_and_portal_apis_return_urls(key_client, catalog, org):
    response = key_client.post(
        "/api/v1/billing/checkout", {"plan": "pro_monthly", "addons": {"extra_seats": 2}}, format="json"
    )
    assert response.status_code == 201 and "/checkout/cs_" in response.json()["url"]
    bad = key_client.post("/api/v1/billing/checkout", {"plan": "gold"}, format="json")
    assert (bad.status_code, bad.json()["code"]) == (400, "unknown_plan")
    portal = key_client.post("/api/v1/billing/portal", {}, format="json")
    assert portal.status_code == 201 and "/portal/" in portal.json()["url"]


def test_a_member_session_cannot_use_the_billing_apis(api_client, catalog, org, member):
    api_client.force_authenticate(member)
    response = api_client.post(
        "/api/v1/billing/checkout", {"plan": "pro_monthly"}, format="json", HTTP_X_TALLY_ORG=org.slug
    )
    assert response.status_code == 403
    assert api_client.get("/api/v1/billing/status", HTTP_X_TALLY_ORG=org.slug).status_code == 200


# --- Reconciliation -----------------------------------------------------------------------


def test_reconcile_reports_and_fixes_drift(catalog, org, owner, capsys, subscribed):
    sub = subscribed("pro_monthly")
    OrgSubscription.objects.filter(pk=sub.pk).update(seats=7, status="past_due")
    call_command("billing_reconcile")
    out = capsys.readouterr().out
    assert "acme: status is 'past_due' here, 'active' in Stripe" in out
    assert "acme: seats is 7 here, 1 in Stripe" in out
    call_command("billing_reconcile", "--fix")
    sub.refresh_from_db()
    assert (sub.status, sub.seats) == ("active", 1)
    call_command("billing_reconcile")
    assert "Every subscription matches Stripe." in capsys.readouterr().out


# --- The money-back refund takes back the first payment only ------------------------------


def test_the_money_back_refund_returns_only_the_subscriptions_first_payment(catalog, org, owner, subscribed):
    subscribed("ai_monthly")
    first = Payment.objects.get(organization=org)
    # An upgrade inside the window is paid separately; it is not the payment the guarantee covers.
    subscriptions.subscription_change(organization=org, plan=Plan.objects.get(key="pro_monthly"), actor=owner)
    remote = catalog.v1.subscriptions.retrieve(
        OrgSubscription.objects.get(organization=org).stripe_subscription_id
    )
    subscriptions.invoice_record(invoice_id=remote.latest_invoice)
    upgrade = Payment.objects.get(organization=org, billing_reason="subscription_update")
    assert upgrade.amount_paid > 0

    refunded = subscriptions.subscription_refund_and_cancel(organization=org, actor=owner)
    assert refunded.stripe_invoice_id == first.stripe_invoice_id
    assert catalog.v1.charges.retrieve(first.stripe_charge_id).amount_refunded == first.amount_paid
    assert catalog.v1.charges.retrieve(upgrade.stripe_charge_id).amount_refunded == 0
    upgrade.refresh_from_db()
    assert (upgrade.status, upgrade.amount_refunded) == ("paid", 0)
    assert OrgSubscription.objects.get(organization=org).status == "canceled"


def test_the_money_back_refund_returns_what_a_partial_refund_left_of_the_first_payment(
    catalog, org, owner, subscribed
):
    # A goodwill refund of part of the first payment (from Stripe's dashboard) used to make the
    # guarantee skip that payment altogether: the customer kept the subscription canceled and
    # lost the rest of the money.
    subscribed("ai_monthly")
    first = Payment.objects.get(organization=org)
    catalog.v1.refunds.create({"charge": first.stripe_charge_id, "amount": first.amount_paid // 4})
    subscriptions.charge_refunded(charge_id=first.stripe_charge_id)
    first.refresh_from_db()
    assert first.status == "partially_refunded"

    refunded = subscriptions.subscription_refund_and_cancel(organization=org, actor=owner)
    assert refunded.stripe_invoice_id == first.stripe_invoice_id
    assert catalog.v1.charges.retrieve(first.stripe_charge_id).amount_refunded == first.amount_paid
    first.refresh_from_db()
    assert (first.status, first.amount_refunded) == ("refunded", first.amount_paid)
    assert OrgSubscription.objects.get(organization=org).status == "canceled"


# --- A pending downgrade can be withdrawn -------------------------------------------------


def test_choosing_the_current_plan_withdraws_a_pending_downgrade(catalog, org, owner, subscribed):
    clock = catalog.v1.test_helpers.test_clocks.create({"frozen_time": int(time.time())})
    subscribed("pro_monthly", clock=clock.id)
    pro, ai = Plan.objects.get(key="pro_monthly"), Plan.objects.get(key="ai_monthly")
    sub = subscriptions.subscription_change(organization=org, plan=ai, actor=owner)
    assert sub.pending_plan == ai

    preview = subscriptions.subscription_change_preview(organization=org, plan=pro)
    assert not preview.immediate and preview.amount_due == 4900  # the renewal stays at Pro's price
    sub = subscriptions.subscription_change(organization=org, plan=pro, actor=owner)
    assert (sub.plan, sub.pending_plan, sub.pending_plan_at) == (pro, None, None)
    remote = catalog.v1.subscriptions.retrieve(sub.stripe_subscription_id)
    assert {item.price.id for item in remote["items"].data} == {
        item.stripe_price_id for item in pro.line_items.all()
    }
    # Nothing changes at renewal: Pro again, at Pro's price.
    end = int(sub.current_period_end.timestamp())
    catalog.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": end + 60})
    sub = subscriptions.subscription_sync(subscription_id=sub.stripe_subscription_id)
    assert (sub.plan, sub.pending_plan) == (pro, None)
    renewal = catalog.v1.invoices.retrieve(
        catalog.v1.subscriptions.retrieve(sub.stripe_subscription_id).latest_invoice
    )
    assert renewal.amount_paid == 4900
    # Without a pending change, the current plan is still no change at all.
    with pytest.raises(ServiceError) as error:
        subscriptions.subscription_change(organization=org, plan=pro, actor=owner)
    assert error.value.code == "same_plan"


def test_the_change_page_offers_to_keep_the_plan_while_a_downgrade_is_pending(
    client_for, catalog, org, owner, subscribed
):
    subscribed("pro_monthly")
    subscriptions.subscription_change(organization=org, plan=Plan.objects.get(key="ai_monthly"), actor=owner)
    client = client_for(owner)
    page = client.get(reverse("billing_change", args=[org.slug]), {"plan": "pro_monthly"})
    assert page.status_code == 200
    response = client.post(reverse("billing_change", args=[org.slug]), {"plan": "pro_monthly"}, follow=True)
    assert b"stays on Pro (monthly)" in response.content
    assert OrgSubscription.objects.get(organization=org).pending_plan is None


# --- The portal returns only to this site -------------------------------------------------


def test_the_portal_api_returns_only_to_this_sites_own_origin(key_client, catalog, stripe_sim, org, settings):
    settings.SITE_URL = "https://app.example.com"
    for foreign in (
        "https://evil.example.net/o/acme/billing/",
        "https://app.example.com.evil.net/",
        "http://app.example.com/o/acme/billing/",  # another scheme is another origin
        "https://app.example.com:8443/",
        "https://user@evil.example.net/",
    ):
        bad = key_client.post("/api/v1/billing/portal", {"return_url": foreign}, format="json")
        body = bad.json()
        assert (bad.status_code, body["code"]) == (400, "invalid_return_url"), foreign
        assert "return_url" in body["fields"]
    assert stripe_sim.store.all("billing_portal.session") == []  # nothing was opened
    ours = "https://app.example.com/o/acme/billing/?from=portal"
    good = key_client.post("/api/v1/billing/portal", {"return_url": ours}, format="json")
    assert good.status_code == 201
    assert [s["return_url"] for s in stripe_sim.store.all("billing_portal.session")] == [ours]
    default = key_client.post("/api/v1/billing/portal", {}, format="json")
    assert default.status_code == 201
    session = stripe_sim.store.get("billing_portal.session", default.json()["url"].rsplit("/", 1)[-1])
    assert session["return_url"] == "https://app.example.com/o/acme/billing/"


def test_choosing_the_pending_plan_again_says_it_is_already_scheduled(catalog, org, owner, subscribed):
    """Found by the lifecycle machine: upgrade, downgrade, then the same downgrade again sent
    Stripe a different request under the first one's idempotency key (an unhandled error)."""
    subscribed("ai_monthly")
    pro, ai = Plan.objects.get(key="pro_monthly"), Plan.objects.get(key="ai_monthly")
    subscriptions.subscription_change(organization=org, plan=pro, actor=owner)
    sub = subscriptions.subscription_change(organization=org, plan=ai, actor=owner)
    assert (sub.plan, sub.pending_plan) == (pro, ai)

    with pytest.raises(ServiceError) as error:
        subscriptions.subscription_change(organization=org, plan=ai, actor=owner)
    assert (error.value.code, error.value.field) == ("already_scheduled", "plan")
    sub.refresh_from_db()
    assert (sub.plan, sub.pending_plan) == (pro, ai)


# --- A paid invoice is recorded whichever subscription Tally tracks at that moment ----------


def test_it_records_a_new_subscriptions_paid_invoice_heard_before_its_subscription(catalog, org, subscribed):
    """The old subscription ended unheard and a new one was paid: its invoice.paid arriving
    while Tally still tracks the old one is recorded all the same (nothing paid for is lost)."""
    old = subscribed("pro_monthly")
    customer = catalog.v1.subscriptions.retrieve(old.stripe_subscription_id).customer
    catalog.v1.subscriptions.cancel(old.stripe_subscription_id)  # no webhooks here: unheard
    new = catalog.v1.subscriptions.create(
        {
            "customer": customer,
            "items": [{"price": i.stripe_price_id, "quantity": 1} for i in old.plan.line_items.all()],
            "metadata": {"tally_org_id": str(org.pk)},
        }
    )
    assert OrgSubscription.objects.get(organization=org).stripe_subscription_id == old.stripe_subscription_id

    payment = subscriptions.invoice_record(invoice_id=new.latest_invoice)

    assert Payment.objects.get(stripe_invoice_id=new.latest_invoice) == payment
    assert (payment.status, payment.amount_paid, payment.stripe_subscription_id) == ("paid", 4_900, new.id)
    tracked = OrgSubscription.objects.get(organization=org)
    assert (tracked.stripe_subscription_id, tracked.status) == (new.id, "active")
    assert tracked.first_paid_at is not None
