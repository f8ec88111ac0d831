"""A subscription checkout that expires, or whose delayed payment (SEPA Direct Debit) fails or
succeeds later: Tally records the outcome, grants only what was paid for, and tells the person.
Webhooks travel the real path, signed by the simulator and posted to dj-stripe's endpoint."""

import pytest
import requests
from django.core import mail
from django.urls import reverse
from djstripe.models import Event

from billing import catalog, subscriptions
from billing.gateway.client import stripe_client
from billing.gateway.setup import stripe_webhook_endpoint_ensure
from billing.models import (
    Addon,
    EntitlementGrant,
    Notice,
    NoticeKind,
    OrgSubscription,
    Plan,
    PlanCheckout,
    PlanLineItem,
)
from billing.webhooks import dispatch

pytestmark = pytest.mark.django_db(transaction=True)

PAYS, FAILS = "DE89370400440532013000", "DE62370400440532013001"


@pytest.fixture
def shop(stripe_sim, live_server, settings):
    settings.SITE_URL = live_server.url
    stripe_webhook_endpoint_ensure(site_url=live_server.url)
    # A euro plan and add-on: SEPA Direct Debit (Stripe's delayed-notification method) is euros only.
    ai = Plan.objects.get(key="ai_monthly")
    euro = Plan.objects.create(
        product=ai.product,
        key="ai_monthly_eur",
        name="AI Access (monthly, EUR)",
        interval="month",
        currency="eur",
    )
    for item in ai.line_items.all():
        PlanLineItem.objects.create(plan=euro, key=item.key, kind=item.kind, unit_amount=item.unit_amount)
    for ent in ai.entitlements.all():
        ent.pk, ent.plan = None, euro
        ent.save()
    onboarding = Addon.objects.get(key="extra_seats")
    entitlements = list(onboarding.entitlements.all())
    onboarding.pk, onboarding.key, onboarding.currency = None, "extra_seats_eur", "eur"
    onboarding.currency_options = {}  # priced in euros only
    onboarding.stripe_product_id = onboarding.stripe_price_id = ""
    onboarding.save()
    for ent in entitlements:
        ent.pk, ent.addon = None, onboarding
        ent.save()
    catalog.catalog_push()
    return stripe_client()


def start(org, owner, plan_key="ai_monthly", addon_key=None) -> str:
    addons = {Addon.objects.get(key=addon_key): 1} if addon_key else {}
    url = subscriptions.checkout_start(
        organization=org, plan=Plan.objects.get(key=plan_key), actor=owner, addons=addons
    )
    return url


def pay(url: str, **form) -> requests.Response:
    response = requests.post(
        url, data={"email": "alice@example.com", **form}, allow_redirects=False, timeout=30
    )
    assert response.status_code == 303, response.text
    return response


def settle(payment_intent: str | None = None) -> None:
    from django.conf import settings

    body = {"payment_intent": payment_intent} if payment_intent else {}
    assert requests.post(f"{settings.STRIPE_API_HOST}/_sim/settle", json=body, timeout=30).ok


def success_page(client, org, session_id: str) -> str:
    return client.get(
        reverse("billing_success", args=[org.slug]), {"session_id": session_id}
    ).content.decode()


def handled_again(kind: str, session_id: str) -> None:
    for event in Event.objects.filter(type=kind):
        if event.data["object"]["id"] == session_id:
            dispatch.handle(event.id)


def test_an_expired_checkout_is_marked_abandoned_and_the_person_is_told(shop, org, owner, client_for):
    url = start(org, owner)
    session_id = url.rsplit("/", 1)[-1]
    checkout = PlanCheckout.objects.get(stripe_session_id=session_id)
    assert (checkout.organization, checkout.plan.key, checkout.status) == (org, "ai_monthly", "open")

    shop.v1.checkout.sessions.expire(session_id)

    checkout.refresh_from_db()
    assert checkout.status == "abandoned" and checkout.settled_at is not None
    handled_again("checkout.session.expired", session_id)  # a replay changes nothing
    assert PlanCheckout.objects.get(pk=checkout.pk).settled_at == checkout.settled_at
    client = client_for(owner)
    page = success_page(client, org, session_id)
    assert "This checkout expired" in page and "every 1s" not in page
    assert "This checkout expired" in client.get(reverse("billing", args=[org.slug])).content.decode()
    assert not OrgSubscription.objects.filter(organization=org).exists()


def test_a_bank_debit_grants_the_plan_and_add_on_only_once_paid(shop, org, owner, client_for):
    url = start(org, owner, "ai_monthly_eur", "extra_seats_eur")
    session_id = url.rsplit("/", 1)[-1]
    pay(url, iban=PAYS)

    # Completed, but unpaid: no plan, no add-on; the page says the bank is processing it.
    sub = OrgSubscription.objects.get(organization=org)
    assert sub.status == "incomplete" and not sub.applies
    assert not EntitlementGrant.objects.filter(organizations=org).exists()
    assert PlanCheckout.objects.get(stripe_session_id=session_id).status == "processing"
    assert "bank is processing" in success_page(client_for(owner), org, session_id)

    settle()

    sub.refresh_from_db()
    assert sub.status == "active" and sub.plan.key == "ai_monthly_eur"
    assert EntitlementGrant.objects.filter(organizations=org, source="addon").count() == 1
    assert PlanCheckout.objects.get(stripe_session_id=session_id).status == "completed"
    handled_again("checkout.session.async_payment_succeeded", session_id)
    handled_again("checkout.session.completed", session_id)
    assert EntitlementGrant.objects.filter(organizations=org, source="addon").count() == 1
    assert "You're on AI Access (monthly, EUR)" in success_page(client_for(owner), org, session_id)


def test_a_failed_bank_debit_is_marked_failed_and_the_person_sees_why(shop, org, owner, client_for):
    url = start(org, owner, "ai_monthly_eur", "extra_seats_eur")
    session_id = url.rsplit("/", 1)[-1]
    pay(url, iban=FAILS)
    settle()

    checkout = PlanCheckout.objects.get(stripe_session_id=session_id)
    assert checkout.status == "failed"
    assert "insufficient funds" in checkout.failure_message
    handled_again("checkout.session.async_payment_failed", session_id)
    handled_again("checkout.session.completed", session_id)
    (told,) = [m for m in mail.outbox if "bank debit" in m.subject]
    assert told.subject == "Acme: your bank debit did not go through"
    assert told.to == ["alice@example.com"]
    assert "The bank debit of €" in told.body and "for Acme's subscription did not go through" in told.body
    assert "insufficient funds" in told.body and "The plan was not started" in told.body
    assert "Try again with another payment method: http" in told.body
    assert "insufficient funds" in told.alternatives[0][0]
    assert Notice.objects.filter(kind=NoticeKind.ASYNC_PAYMENT_FAILED).count() == 1
    checkout.refresh_from_db()
    assert checkout.status == "failed"
    assert not OrgSubscription.objects.get(organization=org).applies
    assert not EntitlementGrant.objects.filter(organizations=org).exists()
    client = client_for(owner)
    page = success_page(client, org, session_id)
    assert "The payment failed: The customer&#x27;s account has insufficient funds" in page
    assert "every 1s" not in page
    assert "The payment failed" in client.get(reverse("billing", args=[org.slug])).content.decode()


def test_a_paid_checkout_is_marked_completed(shop, org, owner):
    url = start(org, owner)
    pay(url, card_number="4242424242424242")
    checkout = PlanCheckout.objects.get(stripe_session_id=url.rsplit("/", 1)[-1])
    assert checkout.status == "completed"
    assert OrgSubscription.objects.get(organization=org).applies


def test_an_outsider_sees_nothing_of_the_outcome(shop, org, owner, outsider, client_for):
    url = start(org, owner)
    shop.v1.checkout.sessions.expire(url.rsplit("/", 1)[-1])
    response = client_for(outsider).get(
        reverse("billing_success", args=[org.slug]), {"session_id": url.rsplit("/", 1)[-1]}
    )
    assert response.status_code == 404


def test_a_failed_first_bank_debit_is_told_in_one_email(shop, org, owner):
    """Stripe tells of it twice (the invoice's payment failed, the checkout's async payment
    failed); the person gets one email, the one saying the plan was not started."""
    url = start(org, owner, "ai_monthly_eur")
    session_id = url.rsplit("/", 1)[-1]
    pay(url, iban=FAILS)
    settle()
    for kind in ("invoice.payment_failed", "checkout.session.async_payment_failed"):
        events = Event.objects.filter(type=kind)
        assert events.exists()
        for event in events:  # replayed, in either order
            dispatch.handle(event.id)

    assert [m.subject for m in mail.outbox] == ["Acme: your bank debit did not go through"]
    assert "The plan was not started" in mail.outbox[0].body
    assert not Notice.objects.filter(kind=NoticeKind.PAYMENT_FAILED).exists()
    assert Notice.objects.filter(kind=NoticeKind.ASYNC_PAYMENT_FAILED).count() == 1
    assert PlanCheckout.objects.get(stripe_session_id=session_id).status == "failed"
