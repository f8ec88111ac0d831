"""`credits_reconcile` checks I2 and I3 on live data, names each organization that breaks one,
and with --fix repairs what is safe and says what it did."""

import pytest
import requests
from django.core.management import call_command
from django.core.management.base import CommandError

from billing.gateway.client import stripe_client
from billing.gateway.customers import customer_ensure
from billing.webhooks import dispatch
from credits import services
from credits.models import CreditAccount
from tests.factories import CreditPackageFactory

pytestmark = pytest.mark.django_db


def _buy(org, owner, django_capture_on_commit_callbacks) -> str:
    """A package bought through Stripe Checkout; returns the charge."""
    package = CreditPackageFactory(credits=1_000, unit_amount=1_000)
    purchase, url = services.credit_purchase_start(organization=org, package=package, actor=owner)
    paid = requests.post(url, data={"card_number": "4242424242424242"}, allow_redirects=False, timeout=30)
    assert paid.status_code == 303
    with django_capture_on_commit_callbacks(execute=True):
        dispatch.handle("evt_paid", "checkout.session.completed", purchase.checkout_session_id)
    customer = customer_ensure(organization=org)
    return stripe_client().v1.charges.list({"customer": customer}).data[0].id


def test_it_passes_a_paid_purchase(stripe_sim, org, owner, capsys, django_capture_on_commit_callbacks):
    _buy(org, owner, django_capture_on_commit_callbacks)
    call_command("credits_reconcile")
    assert "Every credit account reconciles." in capsys.readouterr().out


def test_it_names_an_organization_spending_credits_of_a_refund_it_never_heard_of(
    stripe_sim, org, owner, capsys, django_capture_on_commit_callbacks
):
    charge = _buy(org, owner, django_capture_on_commit_callbacks)
    stripe_client().v1.refunds.create({"charge": charge})  # from the dashboard; the webhook was lost
    with pytest.raises(CommandError, match="1 discrepancies"):
        call_command("credits_reconcile", "--fix")  # taking credits back is for a person
    err = capsys.readouterr().err
    assert "acme: I3 can spend 1000 credits but only 0 were paid for or due (given 0, paid 0" in err


def test_it_names_credits_granted_as_a_purchase_that_nobody_paid_for(org, capsys):
    services.credits_grant(organization=org, amount=50, source="purchase", idempotency_key="free-lunch")
    with pytest.raises(CommandError):
        call_command("credits_reconcile")
    assert "acme: I3 can spend 50 credits but only 0 were paid for or due" in capsys.readouterr().err


def test_it_sets_a_drifted_cached_balance_back_to_the_ledger(org, capsys):
    services.credits_grant(organization=org, amount=10, source="promotion", idempotency_key="promo")
    services.credits_consume(organization=org, amount=4, idempotency_key="a")
    CreditAccount.objects.filter(organization=org).update(balance=9)
    with pytest.raises(CommandError):
        call_command("credits_reconcile")
    assert "acme: I2 balance = sum of ledger amounts: expected 6, found 9" in capsys.readouterr().err
    call_command("credits_reconcile", "--fix")
    assert "acme: I2 balance differed from the ledger (fixed: cached balance 9 set to the ledger's 6)" in (
        capsys.readouterr().err
    )
    assert CreditAccount.objects.get(organization=org).balance == 6
    call_command("credits_reconcile")
    assert "Every credit account reconciles." in capsys.readouterr().out


def test_it_leaves_a_ledger_that_disagrees_with_its_grants_to_a_person(org, capsys):
    services.credits_grant(organization=org, amount=10, source="promotion", idempotency_key="promo")
    from credits.models import CreditGrant

    CreditGrant.objects.filter(account__organization=org).update(remaining=3)
    with pytest.raises(CommandError):
        call_command("credits_reconcile", "--fix")
    err = capsys.readouterr().err
    assert "acme: I2 remaining grants = max(balance, 0): expected 10, found 3" in err
    assert "fixed" not in err
