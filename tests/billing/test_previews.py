"""What the plan-change preview and the upcoming-invoice box tell a person, against the simulator."""

import pytest
from django.urls import reverse

from billing import seats, subscriptions
from billing.catalog import catalog_push
from billing.gateway.client import stripe_client
from billing.models import OrgSubscription, Plan
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog(stripe_sim):
    catalog_push()
    return stripe_client()


def test_it_previews_an_upgrade_during_a_trial_as_the_first_charge_at_the_trials_end(
    client_for, catalog, org, owner, subscribed
):
    MembershipFactory(organization=org, role="member")
    sub = subscribed("ai_monthly", trial_days=14, sync=True)
    assert sub.status == "trialing"
    page = client_for(owner).get(reverse("billing_change", args=[org.slug]), {"plan": "platform_monthly"})
    preview = page.context["preview"]
    assert preview.trial and not preview.immediate
    assert preview.amount_due == 4900
    assert preview.next_payment_at == sub.trial_end
    assert preview.lines == [("Platform fee", 4900), ("Seats 1–2", 0)]
    text = page.content.decode()
    assert f"First charge on {sub.trial_end:%-d %b %Y}" in text
    assert "Due now" not in text and "×" not in text
    assert "trial continues" in text


def test_it_names_the_lines_of_an_immediate_upgrade(client_for, catalog, org, owner, subscribed):
    subscribed("ai_monthly", sync=True)
    preview = subscriptions.subscription_change_preview(
        organization=org, plan=Plan.objects.get(key="platform_monthly")
    )
    assert preview.immediate and not preview.trial
    labels = [label for label, _ in preview.lines]
    assert "Unused time on AI Access fee" in labels
    assert "Remaining time on Platform fee" in labels
    assert not any("×" in label for label in labels)


def test_it_says_there_is_no_next_invoice_after_a_cancel(client_for, catalog, org, owner, subscribed):
    sub = subscribed("pro_monthly", sync=True)
    client = client_for(owner)
    client.post(reverse("billing_cancel", args=[org.slug]))
    box = client.get(reverse("billing_upcoming", args=[org.slug])).content.decode()
    assert "Loading" not in box
    assert "No next invoice" in box
    sub.refresh_from_db()
    assert f"access ends on {sub.current_period_end:%-d %b %Y}" in box


def test_a_canceled_plan_row_does_not_also_show_a_scheduled_downgrade(
    client_for, catalog, org, owner, subscribed
):
    subscribed("pro_monthly", sync=True)
    client = client_for(owner)
    client.post(reverse("billing_change", args=[org.slug]), {"plan": "ai_monthly"})
    assert OrgSubscription.objects.get(organization=org).pending_plan.key == "ai_monthly"
    client.post(reverse("billing_cancel", args=[org.slug]))
    page = client.get(reverse("billing", args=[org.slug])).content.decode()
    assert "→ AI Access" not in page
    assert "cancels" in page


def test_confirming_an_upgrade_during_a_trial_charges_nothing_and_keeps_the_trial(
    client_for, catalog, org, owner, subscribed
):
    sub = subscribed("ai_monthly", trial_days=14, sync=True)
    client_for(owner).post(reverse("billing_change", args=[org.slug]), {"plan": "platform_monthly"})
    after = OrgSubscription.objects.get(organization=org)
    assert (after.plan.key, after.status, after.trial_end) == ("platform_monthly", "trialing", sub.trial_end)
    invoices = catalog.v1.invoices.list({"subscription": sub.stripe_subscription_id, "limit": 10}).data
    assert sum(invoice.amount_paid for invoice in invoices) == 0


def test_the_seat_preview_names_its_invoice_lines_too(catalog, org, owner, subscribed):
    MembershipFactory.create_batch(3, organization=org, role="member")
    subscribed("team_monthly", sync=True)
    sub = subscriptions.subscription_sync(
        subscription_id=OrgSubscription.objects.get(organization=org).stripe_subscription_id
    )
    assert sub.plan.key == "team_monthly"
    preview = seats.seat_preview(organization=org, with_invoice=True)
    labels = [label for label, _ in preview.upcoming.lines]
    assert labels and not any("×" in label for label in labels), labels


def test_trials_are_offered_only_to_an_organization_that_never_paid(
    client_for, catalog, org, owner, subscribed
):
    client = client_for(owner)
    assert "Start your trial" in client.get(reverse("pricing")).content.decode()
    assert "Start 14-day trial" in client.get(reverse("billing", args=[org.slug])).content.decode()
    subscribed("ai_monthly", sync=True)
    client.post(reverse("billing_refund", args=[org.slug]))  # paid once, then ended
    assert OrgSubscription.objects.get(organization=org).status == "canceled"
    pricing = client.get(reverse("pricing")).content.decode()
    billing = client.get(reverse("billing", args=[org.slug])).content.decode()
    assert "Start your trial" not in pricing and "Start 14-day trial" not in billing
    assert 'data-testid="subscribe-pro"' in pricing
