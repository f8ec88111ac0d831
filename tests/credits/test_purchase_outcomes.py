"""A credit package's checkout that expires, or that is paid by a bank debit (SEPA Direct
Debit) that succeeds or fails days later: credits are granted only once the bank has paid, the
purchase records how it ended, and the credits page says so. Webhooks travel the real path."""

import pytest
import requests
from django.conf import settings
from django.core import mail
from django.urls import reverse
from djstripe.models import Event

from billing.gateway.client import stripe_client
from billing.gateway.setup import stripe_webhook_endpoint_ensure
from billing.webhooks import dispatch
from credits import services
from credits.models import CreditPurchase
from teams.models import AuditEvent
from tests.credits.helpers import assert_reconciles, balance_of
from tests.factories import CreditPackageFactory

pytestmark = pytest.mark.django_db(transaction=True)

PAYS, FAILS = "DE89370400440532013000", "DE62370400440532013001"


@pytest.fixture
def shop(stripe_sim, live_server, settings, org, owner):
    settings.SITE_URL = live_server.url
    stripe_webhook_endpoint_ensure(site_url=live_server.url)
    # SEPA Direct Debit, Stripe's delayed-notification method, is for euros only.
    CreditPackageFactory(
        code="euro-10", name="10,000 credits", credits=10_000, unit_amount=1_000, currency="eur"
    )
    return stripe_client()


def start(org, owner, code="euro-10") -> tuple[CreditPurchase, str]:
    return services.credit_purchase_start(
        organization=org, package=services.credit_package_get(code=code), actor=owner
    )


def pay(url: str, **form) -> requests.Response:
    paid = requests.post(url, data={"email": "alice@example.com", **form}, allow_redirects=False, timeout=30)
    assert paid.status_code == 303, paid.text
    return paid


def settle() -> None:
    assert requests.post(f"{settings.STRIPE_API_HOST}/_sim/settle", json={}, timeout=30).ok


def replay(kind: str, session_id: str) -> None:
    for event in Event.objects.filter(type=kind):
        if event.data["object"]["id"] == session_id:
            dispatch.handle(event.id)


def credits_page(client, org, **params) -> str:
    return client.get(reverse("credits", args=[org.slug]), params).content.decode()


def test_an_expired_checkout_marks_the_purchase_abandoned_and_says_so(shop, org, owner, client_for):
    purchase, _ = start(org, owner)
    shop.v1.checkout.sessions.expire(purchase.checkout_session_id)

    purchase.refresh_from_db()
    assert (purchase.status, purchase.transaction) == ("abandoned", None)
    assert purchase.ended_at is not None
    replay("checkout.session.expired", purchase.checkout_session_id)
    assert CreditPurchase.objects.get(pk=purchase.pk).ended_at == purchase.ended_at
    assert AuditEvent.objects.filter(action="credits.purchase_abandoned").count() == 1
    assert balance_of(org) == 0
    page = credits_page(client_for(owner), org, purchase="complete", code=str(purchase.code))
    assert "This checkout expired" in page
    assert "This checkout expired" in credits_page(client_for(owner), org)  # coming back later


def test_a_bank_debit_grants_the_credits_only_once_the_bank_has_paid(shop, org, owner, client_for):
    purchase, url = start(org, owner)
    back = pay(url, iban=PAYS)
    assert back.headers["Location"].endswith(f"?purchase=complete&code={purchase.code}")

    purchase.refresh_from_db()
    assert (purchase.status, purchase.processing, balance_of(org)) == ("pending", True, 0)
    page = credits_page(client_for(owner), org, purchase="complete", code=str(purchase.code))
    assert "Your bank is processing the payment" in page and "every 10s" in page

    settle()

    purchase.refresh_from_db()
    assert (purchase.status, purchase.processing, balance_of(org)) == ("completed", False, 10_000)
    assert purchase.payment_intent_id.startswith("pi_")
    replay("checkout.session.async_payment_succeeded", purchase.checkout_session_id)
    replay("checkout.session.completed", purchase.checkout_session_id)
    assert balance_of(org) == 10_000
    poll = client_for(owner).get(reverse("credits_purchase", args=[org.slug, purchase.code]))
    assert "10,000 credits added" in poll.content.decode() and b"hx-trigger" not in poll.content
    assert_reconciles()


def test_a_failed_bank_debit_marks_the_purchase_failed_and_says_why(shop, org, owner, client_for):
    purchase, url = start(org, owner)
    pay(url, iban=FAILS)
    settle()

    purchase.refresh_from_db()
    assert (purchase.status, purchase.transaction, balance_of(org)) == ("failed", None, 0)
    assert "insufficient funds" in purchase.failure_message
    replay("checkout.session.async_payment_failed", purchase.checkout_session_id)
    replay("checkout.session.completed", purchase.checkout_session_id)
    assert CreditPurchase.objects.get(pk=purchase.pk).status == "failed" and balance_of(org) == 0
    (told,) = mail.outbox  # once, however often Stripe tells of it
    assert told.subject == "Acme: your bank debit did not go through"
    assert "for Acme's purchase did not go through" in told.body and "No credits were added" in told.body
    assert "/o/acme/credits/" in told.body
    page = credits_page(client_for(owner), org, purchase="complete", code=str(purchase.code))
    assert "The payment failed: The customer&#x27;s account has insufficient funds" in page
    assert "hx-trigger" not in page.split('id="purchase-outcome"')[1].split("</div>")[0]


def test_a_card_purchase_still_grants_at_once(shop, org, owner):
    purchase, url = start(org, owner)
    pay(url, card_number="4242424242424242")
    purchase.refresh_from_db()
    assert (purchase.status, balance_of(org)) == ("completed", 10_000)


def test_an_outsider_cannot_see_a_purchase(shop, org, owner, outsider, client_for):
    purchase, _ = start(org, owner)
    response = client_for(outsider).get(reverse("credits_purchase", args=[org.slug, purchase.code]))
    assert response.status_code == 404
    # Nor through their own organization.
    their = outsider.memberships.first().organization
    response = client_for(outsider).get(reverse("credits_purchase", args=[their.slug, purchase.code]))
    assert response.status_code == 404
