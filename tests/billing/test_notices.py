"""Billing notices by email: one layout (text and HTML), one recipient rule, each sent once per
fact however often Stripe tells of it, and honouring each contact's notification settings."""

from datetime import UTC, datetime

import pytest
from django.core import mail
from django.db import transaction
from django.urls import reverse

from billing import notifications
from billing.catalog import catalog_push
from billing.gateway.client import stripe_client
from billing.models import (
    Notice,
    NoticeKind,
    NoticePreference,
    OrgSubscription,
    Payment,
    PaymentDispute,
    Plan,
)
from billing.webhooks import dispatch
from tests.billing.conftest import subscribe

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog(stripe_sim):
    catalog_push()
    return stripe_client()


def _failed_payment(org, client):
    """A first invoice whose card is declined: open, failed once."""
    remote = subscribe("pro_monthly", organization=org, card="pm_card_chargeCustomerFail", record=False)
    return client.v1.subscriptions.retrieve(remote.id).latest_invoice


def test_it_sends_payment_failed_once_when_the_event_is_replayed(
    catalog, org, owner, django_capture_on_commit_callbacks
):
    invoice_id = _failed_payment(org, catalog)
    mail.outbox.clear()
    for _ in range(3):  # the delivery, a duplicate delivery, a replay from the admin
        with django_capture_on_commit_callbacks(execute=True):
            dispatch.handle("evt_failed_1", "invoice.payment_failed", invoice_id)
    failed = [m for m in mail.outbox if m.subject.startswith("Payment failed")]
    assert len(failed) == 1
    assert Payment.objects.get(stripe_invoice_id=invoice_id).status == "failed"


def test_it_sends_one_receipt_and_one_welcome_per_subscription(
    catalog, org, owner, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        subscription = subscribe("pro_monthly", organization=org, sync=True)
    invoice_id = Payment.objects.get(organization=org).stripe_invoice_id
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            dispatch.handle("evt_paid_1", "invoice.paid", invoice_id)
            dispatch.handle("evt_sub_1", "customer.subscription.updated", subscription.stripe_subscription_id)
    subjects = [m.subject for m in mail.outbox]
    assert subjects.count("Receipt for Acme: " + Payment.objects.get().number) == 1
    assert len([s for s in subjects if s.startswith("Welcome to ")]) == 1
    assert not [s for s in subjects if s.startswith("Payment failed")]


def test_an_invoice_recorded_paid_before_sends_no_late_receipt(
    catalog, org, owner, django_capture_on_commit_callbacks
):
    remote = subscribe("pro_monthly", organization=org, record=False)
    invoice = catalog.v1.invoices.retrieve(remote.latest_invoice)
    _payment(org, stripe_invoice_id=invoice.id, status=Payment.Status.PAID, amount_paid=invoice.amount_paid)
    with django_capture_on_commit_callbacks(execute=True):
        dispatch.handle("evt_paid_old", "invoice.paid", invoice.id)  # a reconcile or a replay
    assert not [m for m in mail.outbox if m.subject.startswith("Receipt")]


def test_it_tells_of_a_trial_ending_once(catalog, org, owner, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        subscription = subscribe("pro_monthly", organization=org, trial_days=14, sync=True)
    mail.outbox.clear()
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            dispatch.handle(
                "evt_trial_1", "customer.subscription.trial_will_end", subscription.stripe_subscription_id
            )
    (sent,) = mail.outbox
    assert sent.subject.startswith("Acme: your trial ends on ")
    assert "Review your plan: http" in sent.body


# --- Rendering: every kind, in the shared layout ------------------------------------------


def _payment(org, **values) -> Payment:
    defaults = {
        "stripe_invoice_id": "in_test_1",
        "number": "ACME-0001",
        "status": Payment.Status.FAILED,
        "amount_due": 4900,
        "amount_paid": 0,
        "total": 4900,
        "currency": "usd",
        "hosted_invoice_url": "https://invoice.example/in_test_1",
    }
    return Payment.objects.create(organization=org, **{**defaults, **values})


def _send(django_capture_on_commit_callbacks, **notice):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        queued = notifications.notice_queue(**notice)
    return queued


def test_it_prints_a_failed_amount_as_money_not_minor_units(org, owner, django_capture_on_commit_callbacks):
    payment = _payment(org, amount_due=4950, amount_discount=550)
    _send(
        django_capture_on_commit_callbacks,
        organization=org,
        kind=NoticeKind.PAYMENT_FAILED,
        key="in_test_1:1",
        data={"payment": payment.pk},
    )
    (sent,) = mail.outbox
    assert sent.subject == "Payment failed for Acme: please update your card"
    assert sent.to == ["alice@example.com"]
    assert "We could not collect $49.50 for Acme's subscription (invoice ACME-0001)" in sent.body
    assert "4950" not in sent.body
    assert "after a discount of $5.50" in sent.body
    assert "Update the card: http" in sent.body and "/o/acme/billing/" in sent.body
    html = sent.alternatives[0][0]
    assert sent.alternatives[0][1] == "text/html"
    assert "$49.50" in html and 'href="http' in html and "Update the card" in html
    assert "always sent" in sent.body  # a critical notice says so instead of a settings link


def test_it_prints_a_zero_decimal_currency_in_whole_units(org, owner, django_capture_on_commit_callbacks):
    payment = _payment(org, currency="jpy", amount_due=1500, total=1500)
    _send(
        django_capture_on_commit_callbacks,
        organization=org,
        kind=NoticeKind.PAYMENT_FAILED,
        key="in_test_1:1",
        data={"payment": payment.pk},
    )
    assert "We could not collect ¥1,500 for Acme" in mail.outbox[0].body
    assert "¥15" not in mail.outbox[0].body.replace("¥1,500", "")


def test_a_receipt_lists_the_lines_the_discount_the_tax_and_the_total(
    org, owner, django_capture_on_commit_callbacks
):
    payment = _payment(
        org,
        status=Payment.Status.PAID,
        amount_paid=4860,
        amount_discount=1000,
        amount_tax=810,
        total=4860,
        currency="eur",
        lines=[{"description": "Pro × 1", "amount": 5050, "currency": "eur", "quantity": 1}],
    )
    _send(
        django_capture_on_commit_callbacks,
        organization=org,
        kind=NoticeKind.RECEIPT,
        key="in_test_1",
        data={"payment": payment.pk},
    )
    (sent,) = mail.outbox
    assert sent.subject == "Receipt for Acme: ACME-0001"
    assert "Acme paid €48.60 for invoice ACME-0001" in sent.body
    assert "Pro × 1: €50.50" in sent.body
    assert "Discount: −€10" in sent.body and "Tax: €8.10" in sent.body and "Total: €48.60" in sent.body
    assert "View the invoice: https://invoice.example/in_test_1" in sent.body
    assert "Choose which billing emails you receive: http" in sent.body
    assert "€48.60" in sent.alternatives[0][0]


def _subscription(org, **values) -> OrgSubscription:
    defaults = {
        "plan": Plan.objects.get(key="pro_monthly"),
        "status": "trialing",
        "stripe_subscription_id": "sub_test_1",
        "trial_end": datetime(2026, 5, 4, tzinfo=UTC),
        "current_period_end": datetime(2026, 5, 4, tzinfo=UTC),
    }
    return OrgSubscription.objects.create(organization=org, **{**defaults, **values})


@pytest.mark.parametrize(
    ("kind", "data", "subject", "phrase"),
    [
        (
            NoticeKind.TRIAL_ENDING,
            {},
            "Acme: your trial ends on 4 May",
            "trial of Pro (monthly) ends on 4 May 2026",
        ),
        (NoticeKind.WELCOME, {}, "Welcome to Pro (monthly), Acme", "Acme is subscribed to Pro (monthly)"),
        (
            NoticeKind.SUBSCRIPTION_CANCELED,
            {"ended": True},
            "Acme: your subscription was canceled",
            "subscription to Pro (monthly) was canceled",
        ),
        (
            NoticeKind.PLAN_CHANGED,
            {"from_name": "Starter", "to_name": "Pro"},
            "Acme is now on Pro",
            "Acme moved from Starter to Pro",
        ),
    ],
)
def test_it_renders_each_subscription_notice(
    org, owner, kind, data, subject, phrase, django_capture_on_commit_callbacks
):
    _subscription(org)
    _send(django_capture_on_commit_callbacks, organization=org, kind=kind, key="sub_test_1", data=data)
    (sent,) = mail.outbox
    assert sent.subject == subject
    assert phrase in sent.body and phrase in sent.alternatives[0][0]
    assert sent.to == ["alice@example.com"]


def test_it_renders_a_refund_and_a_dispute(org, owner, django_capture_on_commit_callbacks):
    payment = _payment(org, status=Payment.Status.PARTIALLY_REFUNDED, amount_paid=4900, amount_refunded=1000)
    dispute = PaymentDispute.objects.create(
        organization=org,
        payment=payment,
        stripe_dispute_id="dp_1",
        stripe_charge_id="ch_1",
        amount=4900,
        currency="usd",
    )
    _send(
        django_capture_on_commit_callbacks,
        organization=org,
        kind=NoticeKind.REFUND,
        key="in_test_1:1000",
        data={"payment": payment.pk, "amount_refunded": 1000},
    )
    _send(
        django_capture_on_commit_callbacks,
        organization=org,
        kind=NoticeKind.DISPUTE,
        key="dp_1:open",
        data={"dispute": dispute.pk, "status": "open"},
    )
    refund, disputed = mail.outbox
    assert refund.subject == "Acme: a refund is on its way"
    assert "$10 of the $49 Acme paid for invoice ACME-0001 was refunded" in refund.body
    assert disputed.subject == "Acme: payment disputed"
    assert "A payment of $49 by Acme" in disputed.body


def test_a_notice_already_recorded_is_not_sent_again(org, owner, django_capture_on_commit_callbacks):
    payment = _payment(org)
    notice = dict(
        organization=org, kind=NoticeKind.PAYMENT_FAILED, key="in_test_1:1", data={"payment": payment.pk}
    )
    assert _send(django_capture_on_commit_callbacks, **notice) is not None
    assert _send(django_capture_on_commit_callbacks, **notice) is None
    assert len(mail.outbox) == 1
    assert Notice.objects.get().status == Notice.Status.SENT
    notifications.notice_send(notice_id=Notice.objects.get().pk)  # a task delivered twice
    assert len(mail.outbox) == 1


def test_a_failure_paid_before_the_email_goes_out_is_not_sent(org, owner, django_capture_on_commit_callbacks):
    payment = _payment(org, status=Payment.Status.PAID, amount_paid=4900)
    _send(
        django_capture_on_commit_callbacks,
        organization=org,
        kind=NoticeKind.PAYMENT_FAILED,
        key="in_test_1:1",
        data={"payment": payment.pk},
    )
    assert mail.outbox == []
    assert Notice.objects.get().status == Notice.Status.SKIPPED


# --- The settings page ---------------------------------------------------------------------


def test_each_contact_turns_off_what_is_not_critical(
    org, owner, billing_manager, client_for, django_capture_on_commit_callbacks
):
    client = client_for(billing_manager)
    page = client.get(reverse("billing_notices", args=[org.slug]))
    assert page.status_code == 200
    assert b'value="receipt" checked' in page.content
    wanted = [kind.value for kind in notifications.notice_kinds_offered() if kind != NoticeKind.RECEIPT]
    # A critical kind posted as unwanted (by leaving it out) stays on: it is never in `muted`.
    response = client.post(reverse("billing_notices", args=[org.slug]), {"notice": wanted})
    assert response.status_code == 302
    assert notifications.notice_muted(organization=org, user=billing_manager) == {"receipt"}
    assert b'value="receipt" checked' not in client.get(reverse("billing_notices", args=[org.slug])).content

    paid = _payment(org, stripe_invoice_id="in_paid", status=Payment.Status.PAID, amount_paid=4900)
    failed = _payment(org, stripe_invoice_id="in_failed")
    for kind, payment in ((NoticeKind.RECEIPT, paid), (NoticeKind.PAYMENT_FAILED, failed)):
        _send(
            django_capture_on_commit_callbacks,
            organization=org,
            kind=kind,
            key=payment.stripe_invoice_id,
            data={"payment": payment.pk},
        )
    receipt, failure = mail.outbox
    assert receipt.to == ["alice@example.com"]  # Bill turned receipts off, Alice did not
    assert failure.to == ["alice@example.com", "bill@example.com"]  # failures cannot be turned off


def test_the_settings_page_is_for_those_who_manage_billing(org, member, outsider, client_for):
    url = reverse("billing_notices", args=[org.slug])
    assert client_for(member).get(url).status_code == 403
    assert client_for(member).post(url, {"notice": []}).status_code == 403
    assert client_for(outsider).get(url).status_code == 404
    assert client_for(outsider).post(url, {"notice": []}).status_code == 404
    assert not NoticePreference.objects.exists()


def test_unknown_kinds_posted_change_nothing_else(org, owner, client_for):
    client_for(owner).post(reverse("billing_notices", args=[org.slug]), {"notice": ["nonsense", "receipt"]})
    muted = notifications.notice_muted(organization=org, user=owner)
    assert "receipt" not in muted and "nonsense" not in muted
    assert muted == {kind.value for kind in notifications.notice_kinds_offered()} - {"receipt"}


def test_the_new_kinds_are_on_the_settings_page_as_their_criticality_says(org, owner, client_for):
    offered = set(notifications.notice_kinds_offered())
    assert {NoticeKind.PRICE_CHANGE, NoticeKind.SEAT_COUNT_CHANGED, NoticeKind.RECHARGE_SUCCEEDED} <= offered
    assert NoticeKind.ASYNC_PAYMENT_FAILED in notifications.notice_kinds_always()
    page = client_for(owner).get(reverse("billing_notices", args=[org.slug])).content.decode()
    assert 'value="price_change" checked' in page and 'value="seat_count_changed" checked' in page
    assert 'value="async_payment_failed"' not in page  # cannot be turned off


def test_an_async_payment_failure_is_sent_even_to_a_contact_who_muted_it(
    org, owner, django_capture_on_commit_callbacks
):
    notifications.notice_preferences_update(
        organization=org, user=owner, muted=[NoticeKind.SEAT_COUNT_CHANGED, NoticeKind.ASYNC_PAYMENT_FAILED]
    )
    _send(
        django_capture_on_commit_callbacks,
        organization=org,
        kind=NoticeKind.ASYNC_PAYMENT_FAILED,
        key="cs_1",
        data={"amount": 4950, "currency": "eur", "reason": "Insufficient funds.", "what": "subscription"},
    )
    (sent,) = mail.outbox
    assert (
        "The bank debit of €49.50 for Acme's subscription did not go through: Insufficient funds."
        in sent.body
    )
    assert (
        notifications.async_payment_failed_queue(
            organization=org, key="cs_1", amount=4950, currency="eur", reason="", what="subscription"
        )
        is None
    )  # the event replayed: already told
