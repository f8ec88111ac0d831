"""What the credits page does around a purchase and auto-recharge, against the simulator."""

import pytest
from django.urls import reverse

from billing.gateway.client import stripe_client
from billing.gateway.customers import customer_ensure
from common.errors import ServiceError
from credits import services
from credits.models import CreditAccount, CreditPurchase, PurchaseStatus
from tests.factories import CreditPackageFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def pack(db):
    return CreditPackageFactory(code="pack-10", name="$10 pack", credits=10_000, unit_amount=1000)


def _settings(pack, *, enabled=True):
    return {
        "low_balance_threshold": 0,
        "auto_recharge_enabled": "on" if enabled else "",
        "auto_recharge_threshold": 500,
        "auto_recharge_package": pack.pk,
        "auto_recharge_monthly_limit": 50,
    }


def test_it_refuses_to_switch_on_auto_recharge_without_a_saved_card(client_for, stripe_sim, org, owner, pack):
    client = client_for(owner)
    response = client.post(reverse("credits_settings", args=[org.slug]), _settings(pack))
    assert response.status_code == 400
    assert "Auto-recharge needs a saved card" in response.content.decode()
    assert not CreditAccount.objects.get(organization=org).auto_recharge_enabled

    # With a card on the customer, the same settings are saved.
    customer = customer_ensure(organization=org)
    stripe_client().v1.payment_methods.attach("pm_card_visa", {"customer": customer})
    response = client.post(reverse("credits_settings", args=[org.slug]), _settings(pack))
    assert response.status_code == 302
    assert CreditAccount.objects.get(organization=org).auto_recharge_enabled


def test_the_service_refuses_it_too_and_changes_nothing(stripe_sim, org, owner, pack):
    before = services.credit_account_for(organization=org).low_balance_threshold
    with pytest.raises(ServiceError) as refused:
        services.credit_account_update(
            organization=org,
            actor=owner,
            low_balance_threshold=before + 100,
            auto_recharge_enabled=True,
            auto_recharge_threshold=500,
            auto_recharge_package=pack,
            auto_recharge_monthly_limit=5000,
        )
    assert (refused.value.code, refused.value.field) == ("card_required", "auto_recharge_enabled")
    account = CreditAccount.objects.get(organization=org)
    assert (account.auto_recharge_enabled, account.low_balance_threshold) == (False, before)


def test_the_balance_refreshes_once_a_purchase_is_granted(client_for, org, owner, pack):
    account = services.credit_account_for(organization=org)
    purchase = CreditPurchase.objects.create(
        organization=org, account=account, package=pack, credits=10_000, amount=1000, currency="usd"
    )
    client = client_for(owner)
    back = {"purchase": "complete", "code": str(purchase.code)}  # Checkout's success URL
    page = client.get(reverse("credits", args=[org.slug]), back).content.decode()
    assert 'hx-trigger="every 2s"' in page and "Waiting for Stripe" in page

    services.credit_purchase_complete(
        purchase_code=purchase.code, session_id="cs_test_1", payment_intent_id="pi_1"
    )
    assert CreditPurchase.objects.get(pk=purchase.pk).status == PurchaseStatus.COMPLETED
    poll = client.get(
        reverse("credits", args=[org.slug]),
        back,
        headers={"HX-Request": "true", "HX-Target": "balance"},
    )
    body = poll.content.decode()
    assert "10,000" in body and "every 2s" not in body and "<html" not in body
    assert poll["HX-Trigger"] == "credits-changed"  # the navigation's balance reloads too
