"""Saving a card for auto-recharge through Checkout in setup mode: a card whose bank asks for
authentication is saved only once the cardholder completes the step, and a failed step saves
nothing and is told. Webhooks travel the real path (dj-stripe's endpoint on a live server)."""

from urllib.parse import urlsplit

import pytest
import requests

from billing import subscriptions
from billing.gateway.customers import customer_ensure
from credits import services
from credits.models import CreditRecharge
from teams.models import Organization
from tests.credits.test_purchases import _enable, buy, shop  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

ON_SETUP = "4000002500003155"


def _hosted(client, org) -> str:
    started = client.post(f"/o/{org.slug}/credits/card/")
    assert started.status_code == 302
    return started["Location"]


def _submit(url: str, **form) -> requests.Response:
    return requests.post(url, data={"email": "alice@example.com", **form}, allow_redirects=False, timeout=30)


def _default_card(shop, org):  # noqa: F811
    customer = shop.v1.customers.retrieve(customer_ensure(organization=org))
    return customer.invoice_settings.default_payment_method


def test_a_card_is_saved_once_its_authentication_is_completed(shop, org, owner, client_for):  # noqa: F811
    client = client_for(owner)
    url = _hosted(client, org)
    step = _submit(url, card_number=ON_SETUP)
    assert step.status_code == 200 and "Authenticate this card" in step.text
    assert _default_card(shop, org) is None  # nothing saved while the bank waits

    done = _submit(url, card_number=ON_SETUP, authentication="complete")
    assert done.status_code == 303
    # `checkout.session.completed` already made it the default, before the person is back.
    card = _default_card(shop, org)
    assert card is not None and shop.v1.payment_methods.retrieve(card).card.last4 == "3155"
    back = urlsplit(done.headers["Location"])
    page = client.get(f"{back.path}?{back.query}").content.decode()
    assert "Card saved (ending 3155)" in page
    assert _default_card(shop, org) == card  # the return changes nothing more

    # Authenticated once on setup: auto-recharge charges it off session without asking.
    buy(org, owner, "tokens-1k")
    shop.v1.customers.update(
        customer_ensure(organization=org), {"invoice_settings": {"default_payment_method": card}}
    )
    _enable(org, owner, threshold=500)
    services.credits_consume(organization=org, amount=600, idempotency_key="a")
    recharge = CreditRecharge.objects.get()
    assert recharge.status == "succeeded"
    assert shop.v1.payment_intents.retrieve(recharge.payment_intent_id).payment_method == card


def test_a_failed_authentication_saves_nothing_and_is_told(shop, org, owner, client_for):  # noqa: F811
    client = client_for(owner)
    url = _hosted(client, org)
    failed = _submit(url, card_number=ON_SETUP, authentication="fail")
    assert failed.status_code == 402 and "failed authentication" in failed.text
    assert _default_card(shop, org) is None
    customer = customer_ensure(organization=org)
    assert shop.v1.payment_methods.list({"customer": customer, "type": "card"}).data == []
    # The person leaves Stripe's page: Tally's page says no card was saved, and why.
    page = client.get(f"/o/{org.slug}/credits/card/?canceled=1").content.decode()
    assert "No card was saved: your bank did not confirm the card." in page
    assert "failed authentication" in page and "Try again" in page


def test_a_session_of_another_organization_saves_nothing(shop, org, owner, client_for, outsider):  # noqa: F811
    url = _hosted(client_for(owner), org)
    session_id = url.rsplit("/", 1)[-1]
    assert client_for(outsider).get(f"/o/{org.slug}/credits/card/").status_code == 404
    assert client_for(outsider).post(f"/o/{org.slug}/credits/card/").status_code == 404
    other = Organization.objects.get(slug="other")
    outcome = subscriptions.card_setup_settle(session_id=session_id, organization=other)
    assert not outcome.saved
