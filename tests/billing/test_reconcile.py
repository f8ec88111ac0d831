"""`billing_reconcile` checks I1, I4 and I5 on live data, names each organization that breaks
one, and with --fix repairs what is safe and says what it did."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from billing import entitlements
from billing.catalog import catalog_push
from billing.gateway.client import stripe_client
from billing.models import OrgSubscription
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog(stripe_sim):
    catalog_push()
    return stripe_client()


def test_it_says_all_is_well_when_it_is(catalog, org, owner, capsys, subscribed):
    subscribed("pro_monthly")
    call_command("billing_reconcile")
    assert "Every subscription matches Stripe." in capsys.readouterr().out


def test_it_names_an_organization_with_two_live_subscriptions(catalog, org, owner, capsys, subscribed):
    tracked = subscribed("pro_monthly")
    other = subscribed("ai_monthly", record=False)  # a second checkout that completed anyway
    call_command("billing_reconcile")
    out = capsys.readouterr().out
    both = ", ".join(sorted([tracked.stripe_subscription_id, other.id]))
    assert f"acme: I1 has 2 live subscriptions in Stripe ({both}); Tally tracks" in out


def test_it_tracks_a_live_subscription_tally_never_heard_of(catalog, org, owner, capsys, subscribed):
    remote = subscribed("pro_monthly", record=False)  # its webhooks were lost
    call_command("billing_reconcile")
    out = capsys.readouterr().out
    assert (
        f"acme: I1 Stripe's live subscription {remote.id} (active) is not the one Tally tracks (None)" in out
    )
    call_command("billing_reconcile", "--fix")
    assert f"(fixed: now tracking {remote.id})" in capsys.readouterr().out
    assert OrgSubscription.objects.get(organization=org).stripe_subscription_id == remote.id
    call_command("billing_reconcile")
    assert "Every subscription matches Stripe." in capsys.readouterr().out


def test_it_finds_usage_stripe_was_never_told_and_reports_it(catalog, org, owner, capsys, subscribed):
    subscribed("team_monthly")
    now = timezone.now() + timedelta(seconds=5)
    assert entitlements.consume(org, "ai_generations", 7, idempotency_key="u1", now=now).allowed
    call_command("billing_reconcile")
    out = capsys.readouterr().out
    assert "acme: I4 ai_generations from" in out and "Stripe has 0, Tally recorded 7" in out
    call_command("billing_reconcile", "--fix")
    assert "(fixed: report run: 1 prepared, 1 sent, 0 failed)" in capsys.readouterr().out
    call_command("billing_reconcile")
    assert "Every subscription matches Stripe." in capsys.readouterr().out


def test_it_finds_members_stripe_does_not_bill_and_syncs_them(catalog, org, owner, capsys, subscribed):
    subscribed("team_monthly")
    MembershipFactory.create_batch(4, organization=org)  # no commit here: the sync never ran
    call_command("billing_reconcile")
    out = capsys.readouterr().out
    assert "acme: I5 Stripe bills 1 seat(s), 5 are billable" in out
    call_command("billing_reconcile", "--fix")
    assert "acme: billable seats is 5 here, 1 in Stripe (fixed)" in capsys.readouterr().out
    call_command("billing_reconcile")
    assert "Every subscription matches Stripe." in capsys.readouterr().out
