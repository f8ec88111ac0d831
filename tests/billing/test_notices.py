"""Billing notices by email: one layout (text and HTML), one recipient rule, each sent once per
fact however often Stripe tells of it, and honouring each contact's notification settings."""

import pytest
from django.core import mail

from billing.catalog import catalog_push
from billing.gateway.client import stripe_client
from billing.models import Payment
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
