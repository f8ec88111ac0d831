"""At most one live Stripe subscription per organization. Two tabs start checkout: the second
start expires the first session; a second subscription that completes anyway (two sessions open
at once) is canceled at once and its payment refunded, audited and the owner told; and
`billing_reconcile` names any organization with more than one."""

import pytest
from django.core import mail
from django.core.management import call_command
from djstripe.models import Event

from billing import catalog, subscriptions
from billing.gateway.client import stripe_client
from billing.gateway.customers import customer_ensure
from billing.models import OrgSubscription, Payment, Plan
from billing.webhooks import dispatch
from common.errors import ServiceError
from teams.models import AuditEvent
from tests.billing.conftest import pay_hosted_checkout

LIVE = ("active", "trialing", "past_due", "unpaid", "incomplete")


def live_subscriptions(client, org) -> list:
    customer = customer_ensure(organization=org)
    return [s for s in client.v1.subscriptions.list({"customer": customer}).data if s.status in LIVE]


def session_of(client, url: str):
    return client.v1.checkout.sessions.retrieve(url.rsplit("/", 1)[-1])


@pytest.mark.django_db(transaction=True)
def test_a_new_checkout_expires_the_organizations_earlier_open_sessions(stripe_world, org, owner):
    client = stripe_world.client
    first = subscriptions.checkout_start(
        organization=org, plan=Plan.objects.get(key="ai_monthly"), actor=owner
    )
    second = subscriptions.checkout_start(
        organization=org, plan=Plan.objects.get(key="team_monthly"), actor=owner
    )
    assert session_of(client, first).status == "expired"
    assert session_of(client, second).status == "open"
    # The first tab can no longer be paid; the second can.
    assert pay_hosted_checkout(first).status_code != 303
    assert pay_hosted_checkout(second).status_code == 303
    assert [s.id for s in live_subscriptions(client, org)] == [
        OrgSubscription.objects.get(organization=org).stripe_subscription_id
    ]


@pytest.mark.django_db(transaction=True)
def test_two_checkouts_started_at_once_leave_exactly_one_open(stripe_world, org, owner):
    from tests.races import race

    plan = Plan.objects.get(key="ai_monthly")
    for _ in range(3):
        urls = race(2, lambda i: subscriptions.checkout_start(organization=org, plan=plan, actor=owner))
        assert all(isinstance(url, str) for url in urls), urls
        customer = customer_ensure(organization=org)
        still_open = stripe_world.client.v1.checkout.sessions.list(
            {"customer": customer, "status": "open"}
        ).data
        assert len(still_open) == 1


@pytest.mark.django_db(transaction=True)
def test_a_second_subscription_that_completes_anyway_is_canceled_and_refunded(stripe_world, org, owner):
    client = stripe_world.client
    url = subscriptions.checkout_start(organization=org, plan=Plan.objects.get(key="ai_monthly"), actor=owner)
    first = session_of(client, url)
    # The other tab's session was created while this one's start was still running, so neither
    # start saw the other: two open sessions for one organization.
    lines = client.v1.checkout.sessions.line_items.list(first.id).data
    other = client.v1.checkout.sessions.create(
        {
            "mode": "subscription",
            "customer": first.customer,
            "line_items": [{"price": line.price.id, "quantity": line.quantity} for line in lines],
            "success_url": first.success_url,
            "metadata": dict(first.metadata),
            "subscription_data": {"metadata": dict(first.metadata)},
        }
    )
    assert pay_hosted_checkout(url).status_code == 303
    kept = OrgSubscription.objects.get(organization=org).stripe_subscription_id
    mail.outbox.clear()
    assert pay_hosted_checkout(other.url).status_code == 303

    duplicate = client.v1.subscriptions.retrieve(session_of(client, other.url).subscription)
    assert duplicate.id != kept and duplicate.status == "canceled"
    assert [s.id for s in live_subscriptions(client, org)] == [kept]
    local = OrgSubscription.objects.get(organization=org)
    assert (local.stripe_subscription_id, local.status) == (kept, "active")
    # Its payment went back in full.
    invoice = client.v1.invoices.retrieve(
        duplicate.latest_invoice, {"expand": ["payments.data.payment.payment_intent"]}
    )
    charge = client.v1.charges.retrieve(invoice.payments.data[0].payment.payment_intent.latest_charge)
    assert invoice.amount_paid > 0 and charge.amount_refunded == invoice.amount_paid
    assert Payment.objects.get(stripe_invoice_id=invoice.id).status == "refunded"
    # Audited, and the owner told.
    audit = AuditEvent.objects.get(action="billing.duplicate_subscription_canceled")
    assert audit.target == duplicate.id and audit.data["refunded"] == invoice.amount_paid
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["alice@example.com"]
    assert "refunded" in mail.outbox[0].body

    # Every event again, twice: still one cancellation, one refund, one message.
    events = list(Event.objects.values_list("id", flat=True))
    for event_id in events + events:
        dispatch.handle(event_id)
    assert AuditEvent.objects.filter(action="billing.duplicate_subscription_canceled").count() == 1
    assert len(mail.outbox) == 1
    assert OrgSubscription.objects.get(organization=org).stripe_subscription_id == kept
    call_command("billing_reconcile")


@pytest.mark.django_db
def test_reconcile_names_an_organization_with_two_live_subscriptions(stripe_sim, org, owner, capsys):
    """The webhooks of the second subscription were lost: only reconciliation can see it."""
    catalog.catalog_push()
    client = stripe_client()
    customer = customer_ensure(organization=org)
    card = client.v1.payment_methods.attach("pm_card_visa", {"customer": customer})
    prices = [
        {"price": i.stripe_price_id, "quantity": 1}
        for i in Plan.objects.get(key="pro_monthly").line_items.all()
    ]
    created = [
        client.v1.subscriptions.create(
            {
                "customer": customer,
                "items": prices,
                "default_payment_method": card.id,
                "metadata": {"tally_org_id": str(org.pk)},
            }
        )
        for _ in range(2)
    ]
    subscriptions.subscription_sync(subscription_id=created[0].id)  # Tally heard of the first only

    call_command("billing_reconcile")
    out = capsys.readouterr().out
    assert "acme: live subscriptions is 1 here, 2 in Stripe" in out
    call_command("billing_reconcile", "--fix")
    assert client.v1.subscriptions.retrieve(created[1].id).status == "canceled"
    assert client.v1.subscriptions.retrieve(created[0].id).status == "active"
    invoice = client.v1.invoices.retrieve(
        created[1].latest_invoice, {"expand": ["payments.data.payment.payment_intent"]}
    )
    charge = client.v1.charges.retrieve(invoice.payments.data[0].payment.payment_intent.latest_charge)
    assert charge.amount_refunded == invoice.amount_paid == 4_900
    capsys.readouterr()
    call_command("billing_reconcile")
    assert "Every subscription matches Stripe." in capsys.readouterr().out


def test_a_checkout_paid_before_its_webhooks_arrive_blocks_a_second_one(stripe_sim, org, owner):
    """Found by the lifecycle machine: with the first checkout's webhooks not yet delivered,
    Tally sold a second subscription. Stripe is asked, not only Tally's own table."""
    catalog.catalog_push()  # no webhook endpoint: nothing Stripe sends reaches Tally
    client = stripe_client()
    pro = Plan.objects.get(key="pro_monthly")
    pay_hosted_checkout(subscriptions.checkout_start(organization=org, plan=pro, actor=owner))
    assert not OrgSubscription.objects.filter(organization=org).exclude(stripe_subscription_id=None)

    with pytest.raises(ServiceError) as error:
        subscriptions.checkout_start(organization=org, plan=pro, actor=owner)
    assert error.value.code == "already_subscribed"
    (live,) = live_subscriptions(client, org)
    # Tally caught up with the subscription it had not heard of.
    assert OrgSubscription.objects.get(organization=org).stripe_subscription_id == live.id


def _second_checkout(client, org, owner):
    url = subscriptions.checkout_start(organization=org, plan=Plan.objects.get(key="ai_monthly"), actor=owner)
    first = session_of(client, url)
    lines = client.v1.checkout.sessions.line_items.list(first.id).data
    other = client.v1.checkout.sessions.create(
        {
            "mode": "subscription",
            "customer": first.customer,
            "line_items": [{"price": line.price.id, "quantity": line.quantity} for line in lines],
            "success_url": first.success_url,
            "metadata": dict(first.metadata),
            "subscription_data": {"metadata": dict(first.metadata)},
        }
    )
    return url, other


@pytest.mark.django_db(transaction=True)
def test_it_tells_the_owner_a_disputed_duplicate_payment_comes_back_through_the_dispute(
    stripe_world, org, owner
):
    client = stripe_world.client
    url, other = _second_checkout(client, org, owner)
    assert pay_hosted_checkout(url).status_code == 303
    mail.outbox.clear()
    # The second tab pays with a card whose holder disputes the charge at once.
    assert pay_hosted_checkout(other.url, card="4000000000000259").status_code == 303

    duplicate = client.v1.subscriptions.retrieve(session_of(client, other.url).subscription)
    assert duplicate.status == "canceled"
    invoice = client.v1.invoices.retrieve(
        duplicate.latest_invoice, {"expand": ["payments.data.payment.payment_intent"]}
    )
    charge = client.v1.charges.retrieve(invoice.payments.data[0].payment.payment_intent.latest_charge)
    assert charge.disputed and charge.amount_refunded == 0
    audit = AuditEvent.objects.get(action="billing.duplicate_subscription_canceled")
    assert (audit.data["refunded"], audit.data["disputed"]) == (0, invoice.amount_paid)
    # Two messages: the bank's dispute notice, and this one about the second subscription.
    (message,) = [m for m in mail.outbox if "second subscription" in m.subject]
    body = message.body
    assert "had not charged anything" not in body and "refunded its payment" not in body
    assert "was disputed with your bank" in body and "we did not refund it" in body
