"""Buying packages through Stripe Checkout, refunds that claw credits back, and auto-recharge
charging the saved card off-session, all against the Stripe simulator. Webhooks travel the real
path: the simulator signs and posts them to dj-stripe's endpoint on a live server."""

import pytest
import requests
from django.core import mail
from django.urls import reverse
from djstripe.models import Event

from billing import subscriptions
from billing.gateway.client import stripe_client
from billing.gateway.customers import customer_ensure
from billing.gateway.setup import stripe_webhook_endpoint_ensure
from billing.webhooks import dispatch
from credits import services
from credits.models import CreditAccount, CreditPurchase, CreditRecharge, CreditTransaction
from teams.models import AuditEvent
from tests.credits.helpers import assert_reconciles, balance_of

pytestmark = pytest.mark.django_db(transaction=True)


def pay(url: str, card: str = "4242424242424242") -> requests.Response:
    """Pay on the simulator's hosted Checkout page, as the buyer would."""
    return requests.post(
        url, data={"card_number": card, "email": "alice@example.com"}, allow_redirects=False, timeout=30
    )


@pytest.fixture
def shop(stripe_sim, live_server, settings, org, owner):
    settings.SITE_URL = live_server.url
    stripe_webhook_endpoint_ensure(site_url=live_server.url)
    services.credits_seed_packages()
    return stripe_client()


def buy(org, owner, code="pack-50", card="4242424242424242"):
    purchase, url = services.credit_purchase_start(
        organization=org, package=services.credit_package_get(code=code), actor=owner
    )
    return purchase, pay(url, card)


def session_events(purchase) -> list[str]:
    return [
        e.id
        for e in Event.objects.filter(type="checkout.session.completed")
        if e.data["object"]["id"] == purchase.checkout_session_id
    ]


def test_a_paid_checkout_grants_the_package_once(shop, org, owner):
    purchase, paid = buy(org, owner, "pack-50")
    assert paid.status_code == 303
    assert paid.headers["Location"].endswith(f"/o/acme/credits/?purchase=complete&code={purchase.code}")

    purchase.refresh_from_db()
    assert (purchase.status, purchase.credits, purchase.bonus_credits, purchase.amount) == (
        "completed",
        50_000,
        5_000,
        5_000,
    )
    assert purchase.payment_intent_id.startswith("pi_")
    assert balance_of(org) == 55_000
    entry = purchase.transaction
    assert (entry.type, entry.amount, entry.idempotency_key) == (
        "purchase",
        55_000,
        f"purchase:{purchase.checkout_session_id}",
    )

    # The same event handled again, and the session reported by another delivery: still once.
    (event_id,) = session_events(purchase)
    dispatch.handle(event_id)
    dispatch.handle(event_id)
    subscriptions.checkout_complete(session_id=purchase.checkout_session_id)
    assert balance_of(org) == 55_000
    assert CreditTransaction.objects.filter(type="purchase").count() == 1
    assert AuditEvent.objects.filter(action="credits.purchased").count() == 1
    assert CreditAccount.objects.get(organization=org).lifetime_purchased == 55_000
    assert_reconciles()


def test_it_grants_the_package_as_it_was_when_the_checkout_started(shop, org, owner):
    package = services.credit_package_get(code="pack-10")
    purchase, url = services.credit_purchase_start(organization=org, package=package, actor=owner)
    # Staff change the package while the buyer is on the payment page.
    type(package).objects.filter(pk=package.pk).update(credits=1, bonus_credits=0, unit_amount=99_900)
    assert pay(url).status_code == 303
    assert balance_of(org) == 10_000
    purchase.refresh_from_db()
    assert purchase.status == "completed"


def test_a_declined_card_grants_nothing(shop, org, owner):
    purchase, paid = buy(org, owner, "pack-10", card="4000000000000002")
    assert paid.status_code == 402
    purchase.refresh_from_db()
    assert (purchase.status, purchase.transaction) == ("pending", None)
    assert balance_of(org) == 0
    # The buyer tries again with a good card: the same session, paid once.
    assert pay(shop.v1.checkout.sessions.retrieve(purchase.checkout_session_id).url).status_code == 303
    assert balance_of(org) == 10_000


def test_a_refund_claws_back_what_remains_of_the_grant(shop, org, owner):
    purchase, _ = buy(org, owner, "pack-10")  # 10,000 credits for $10
    purchase.refresh_from_db()
    services.credits_consume(organization=org, amount=3_000, idempotency_key="used")

    # Half the money back: half the credits, which are still there.
    shop.v1.refunds.create({"payment_intent": purchase.payment_intent_id, "amount": 500})
    assert balance_of(org) == 7_000 - 5_000
    # The rest refunded: only the 2,000 credits left can be taken; 3,000 were spent.
    shop.v1.refunds.create({"payment_intent": purchase.payment_intent_id})
    assert balance_of(org) == 0
    clawbacks = CreditTransaction.objects.filter(type="clawback").order_by("pk")
    assert [c.amount for c in clawbacks] == [-5_000, -2_000]
    assert clawbacks[1].metadata == {"amount_refunded": 1_000, "not_recovered": 3_000}
    purchase.refresh_from_db()
    assert purchase.amount_refunded == 1_000

    # Every refund event handled again changes nothing.
    for event in Event.objects.filter(type="charge.refunded"):
        dispatch.handle(event.id)
    assert CreditTransaction.objects.filter(type="clawback").count() == 2
    assert balance_of(org) == 0
    assert_reconciles()


def test_a_refund_leaves_credits_held_by_open_reservations(shop, org, owner):
    purchase, _ = buy(org, owner, "tokens-1k")
    purchase.refresh_from_db()
    services.credit_reservation_create(organization=org, amount=400, idempotency_key="hold")
    shop.v1.refunds.create({"payment_intent": purchase.payment_intent_id})
    account = CreditAccount.objects.get(organization=org)
    assert (account.balance, account.held) == (400, 400)
    assert_reconciles()


# --- Auto-recharge -----------------------------------------------------------------------------


def _enable(org, owner, *, package="pack-10", threshold=1_000, limit=5_000):
    return services.credit_account_update(
        organization=org,
        actor=owner,
        low_balance_threshold=0,
        auto_recharge_enabled=True,
        auto_recharge_threshold=threshold,
        auto_recharge_package=services.credit_package_get(code=package),
        auto_recharge_monthly_limit=limit,
    )


def test_auto_recharge_charges_the_saved_card_when_the_balance_runs_low(shop, org, owner):
    buy(org, owner, "tokens-1k")  # saves the card; 1,000 credits
    _enable(org, owner, threshold=500)
    services.credits_consume(organization=org, amount=400, idempotency_key="a")  # 600: above
    assert not CreditRecharge.objects.exists()
    services.credits_consume(organization=org, amount=200, idempotency_key="b")  # 400: crosses

    recharge = CreditRecharge.objects.get()
    assert (recharge.status, recharge.credits, recharge.amount) == ("succeeded", 10_000, 1_000)
    assert balance_of(org) == 400 + 10_000
    intent = shop.v1.payment_intents.retrieve(recharge.payment_intent_id)
    assert (intent.status, intent.amount, intent.metadata["tally_recharge"]) == (
        "succeeded",
        1_000,
        str(recharge.code),
    )
    # Asked again (a redelivered task), nothing more is charged: the balance is above the line.
    assert services.credit_auto_recharge_start(account_id=recharge.account_id) is None
    assert len(shop.v1.payment_intents.list({"limit": 100}).data) == 2  # the purchase, the recharge

    # A refunded recharge is clawed back like a refunded purchase.
    shop.v1.refunds.create({"payment_intent": recharge.payment_intent_id})
    assert balance_of(org) == 400
    assert CreditTransaction.objects.get(type="clawback").amount == -10_000
    assert_reconciles()


def test_auto_recharge_stops_at_the_monthly_limit(shop, org, owner):
    buy(org, owner, "pack-10")  # 10,000 credits
    _enable(org, owner, threshold=5_000, limit=1_000)  # room for one $10 recharge a month
    services.credits_consume(organization=org, amount=6_000, idempotency_key="a")  # 4,000: crosses
    assert balance_of(org) == 14_000
    services.credits_consume(organization=org, amount=10_000, idempotency_key="b")  # crosses again
    assert balance_of(org) == 4_000
    assert list(CreditRecharge.objects.order_by("pk").values_list("status", flat=True)) == [
        "succeeded",
        "skipped",
    ]


def test_a_declined_recharge_turns_auto_recharge_off_alerts_and_audits(shop, org, owner):
    buy(org, owner, "tokens-1k")
    customer = customer_ensure(organization=org)
    failing = shop.v1.payment_methods.attach("pm_card_chargeCustomerFail", {"customer": customer})
    shop.v1.customers.update(customer, {"invoice_settings": {"default_payment_method": failing.id}})
    _enable(org, owner, threshold=500)
    mail.outbox.clear()

    services.credits_consume(organization=org, amount=600, idempotency_key="a")

    recharge = CreditRecharge.objects.get()
    assert (recharge.status, recharge.failure_code) == ("failed", "card_declined")
    assert recharge.payment_intent_id.startswith("pi_")
    assert balance_of(org) == 400
    assert not CreditAccount.objects.get(organization=org).auto_recharge_enabled
    assert AuditEvent.objects.filter(action="credits.auto_recharge_failed").count() == 1
    (email,) = mail.outbox
    assert email.to == ["alice@example.com"] and "auto-recharge failed" in email.subject
    assert "declined" in email.body

    # Off means off: the next crossing charges nothing.
    _enable(org, owner, threshold=500)
    services.credit_account_update(
        organization=org,
        actor=owner,
        low_balance_threshold=0,
        auto_recharge_enabled=False,
        auto_recharge_threshold=0,
        auto_recharge_package=None,
        auto_recharge_monthly_limit=0,
    )
    services.credits_consume(organization=org, amount=300, idempotency_key="b")
    assert CreditRecharge.objects.count() == 1


def test_without_a_saved_card_auto_recharge_fails_and_turns_off(stripe_sim, org, owner, fund):
    services.credits_seed_packages()
    fund(1_000)
    # Switching it on needs a card (test_purchase_pages.py); a card can go away afterwards.
    CreditAccount.objects.filter(organization=org).update(
        auto_recharge_enabled=True,
        auto_recharge_threshold=500,
        auto_recharge_package=services.credit_package_get(code="pack-10"),
        auto_recharge_monthly_limit=5_000,
    )
    services.credits_consume(organization=org, amount=600, idempotency_key="a")
    recharge = CreditRecharge.objects.get()
    assert (recharge.status, recharge.failure_code) == ("failed", "no_saved_card")
    assert not CreditAccount.objects.get(organization=org).auto_recharge_enabled


# --- Pages and API -----------------------------------------------------------------------------


def test_the_buy_button_sends_a_billing_manager_to_checkout(shop, client_for, org, billing_manager, member):
    url = reverse("credits_buy", args=[org.slug])
    assert client_for(member).post(url, {"package": "pack-10"}).status_code == 403
    response = client_for(billing_manager).post(url, {"package": "pack-10"})
    assert response.status_code == 302 and "/checkout/cs_" in response.url
    assert CreditPurchase.objects.get().actor == billing_manager
    page = client_for(billing_manager).get(reverse("credits", args=[org.slug]) + "?purchase=complete")
    assert b'data-testid="purchase-complete"' in page.content and b">Buy</button>" in page.content


def test_the_purchase_api_returns_the_checkout_url(shop, api_client, org, owner, member):
    api_client.force_authenticate(member)
    refused = api_client.post("/api/v1/credits/purchase?org=acme", {"package": "pack-10"}, format="json")
    assert refused.status_code == 403

    api_client.force_authenticate(owner)
    response = api_client.post("/api/v1/credits/purchase?org=acme", {"package": "pack-100"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert (body["package"], body["credits"], body["bonus_credits"], body["amount"], body["status"]) == (
        "pack-100",
        100_000,
        15_000,
        10_000,
        "pending",
    )
    assert pay(body["url"]).status_code == 303
    assert balance_of(org) == 115_000


def test_the_purchase_api_refuses_an_unknown_package_and_changes_nothing(shop, api_client, org, owner):
    api_client.force_authenticate(owner)
    response = api_client.post("/api/v1/credits/purchase?org=acme", {"package": "pack-7"}, format="json")
    assert response.status_code == 400
    assert (response.json()["code"], response.json()["fields"]) == (
        "unknown_package",
        {"package": ["Choose one of the packages on sale."]},
    )
    missing = api_client.post("/api/v1/credits/purchase?org=acme", {}, format="json")
    assert missing.status_code == 400 and "package" in missing.json()["fields"]
    assert not CreditPurchase.objects.exists()


def test_a_package_bought_twice_reuses_its_stripe_price(shop, org, owner):
    """Found by the lifecycle machine: a package's second checkout finds the price the first one
    made (a price made without a tax behaviour is Stripe's "unspecified")."""
    first, _ = services.credit_purchase_start(
        organization=org, package=services.credit_package_get(code="pack-50"), actor=owner
    )
    second, _ = services.credit_purchase_start(
        organization=org, package=services.credit_package_get(code="pack-50"), actor=owner
    )
    sessions = [
        shop.v1.checkout.sessions.line_items.list(p.checkout_session_id).data[0] for p in (first, second)
    ]
    assert sessions[0].price.id == sessions[1].price.id
