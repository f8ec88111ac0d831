"""The invoices page: every invoice with its number, date, period, lines, total, status and its
documents (the hosted page and the PDF the simulator serves), for the billing roles only."""

import pytest
import requests
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing import catalog, subscriptions
from billing.gateway.client import stripe_client
from billing.gateway.customers import customer_ensure
from billing.models import Payment
from tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db


def test_it_lists_each_invoice_with_its_lines_and_documents(subscribed, org, owner, client_for):
    catalog.catalog_push()
    subscribed("ai_monthly")
    (invoice,) = Payment.objects.filter(organization=org)
    assert invoice.invoice_pdf and invoice.hosted_invoice_url and invoice.total == 500
    assert [line["amount"] for line in invoice.lines] == [500]

    client = client_for(owner)
    page = client.get(f"/o/{org.slug}/billing/invoices/")
    assert page.status_code == 200
    html = page.content.decode()
    assert invoice.number in html and "$5" in html
    assert invoice.lines[0]["description"] in html
    assert invoice.invoice_pdf in html and invoice.hosted_invoice_url in html
    assert invoice.period_start.strftime("%-d %b %Y") in html
    # The link leads to a real PDF with the invoice's number.
    document = requests.get(invoice.invoice_pdf, timeout=30)
    assert document.content.startswith(b"%PDF-") and invoice.number.encode() in document.content


def _invoice(org, n):
    Payment.objects.create(
        organization=org,
        stripe_invoice_id=f"in_{n}",
        number=f"ACME-{n:04d}",
        status=Payment.Status.PAID,
        amount_due=500,
        amount_paid=500,
        total=500,
        lines=[
            {
                "description": "Pro",
                "quantity": 1,
                "amount": 500,
                "currency": "usd",
                "period_start": 1775000000,
                "period_end": 1777600000,
            }
        ],
    )


def test_its_queries_do_not_grow_with_the_invoices(org, owner, client_for, django_assert_max_num_queries):
    client = client_for(owner)
    _invoice(org, 0)
    with CaptureQueriesContext(connection) as one:
        client.get(f"/o/{org.slug}/billing/invoices/")
    for n in range(1, 30):
        _invoice(org, n)
    with django_assert_max_num_queries(len(one.captured_queries)):
        page = client.get(f"/o/{org.slug}/billing/invoices/")
    assert page.content.decode().count("ACME-00") == 30


@pytest.mark.parametrize("role", ["owner", "billing_manager"])
def test_the_billing_roles_see_it(request, org, client_for, role):
    user = request.getfixturevalue(role)
    assert client_for(user).get(f"/o/{org.slug}/billing/invoices/").status_code == 200


def test_a_member_is_refused_and_an_outsider_sees_nothing(org, owner, member, outsider, client_for):
    Payment.objects.create(
        organization=org, stripe_invoice_id="in_secret", number="ACME-SECRET", status=Payment.Status.PAID
    )
    refused = client_for(member).get(f"/o/{org.slug}/billing/invoices/")
    assert refused.status_code == 403 and b"ACME-SECRET" not in refused.content
    hidden = client_for(outsider).get(f"/o/{org.slug}/billing/invoices/")
    assert hidden.status_code == 404 and b"ACME-SECRET" not in hidden.content
    other = OrganizationFactory(slug="other-one")
    assert client_for(owner).get(f"/o/{other.slug}/billing/invoices/").status_code == 404


def test_an_invoice_of_more_than_ten_lines_shows_every_line(stripe_sim, org, owner, client_for):
    """Stripe embeds ten lines in an invoice; the rest are paged, and the page and the PDF show
    them all."""
    client = stripe_client()
    customer = customer_ensure(organization=org)
    pm = client.v1.payment_methods.attach("pm_card_visa", {"customer": customer})
    client.v1.customers.update(customer, {"invoice_settings": {"default_payment_method": pm.id}})
    for n in range(12):
        client.v1.invoice_items.create(
            {"customer": customer, "amount": 100 + n, "currency": "usd", "description": f"Extra line {n:02d}"}
        )
    draft = client.v1.invoices.create({"customer": customer, "pending_invoice_items_behavior": "include"})
    client.v1.invoices.finalize_invoice(draft.id)
    client.v1.invoices.pay(draft.id)

    subscriptions.invoice_record(invoice_id=draft.id)
    (invoice,) = Payment.objects.filter(organization=org)
    assert [line["description"] for line in invoice.lines] == [f"Extra line {n:02d}" for n in range(12)]
    assert sum(line["amount"] for line in invoice.lines) == invoice.total

    html = client_for(owner).get(f"/o/{org.slug}/billing/invoices/").content.decode()
    for n in range(12):
        assert f"Extra line {n:02d}" in html
    document = requests.get(invoice.invoice_pdf, timeout=30).content
    assert b"Extra line 00" in document and b"Extra line 11" in document
