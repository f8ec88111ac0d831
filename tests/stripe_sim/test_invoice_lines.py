"""An invoice's `lines` is a list object of at most ten lines, as in Stripe: the rest are read
from `/v1/invoices/{id}/lines`, page by page."""

import stripe

from tests.stripe_sim import helpers


def _invoice_of(client: stripe.StripeClient, count: int) -> stripe.Invoice:
    cus = helpers.customer(client)
    for n in range(count):
        client.v1.invoice_items.create(
            {"customer": cus.id, "amount": 100 + n, "currency": "usd", "description": f"Line {n}"}
        )
    draft = client.v1.invoices.create({"customer": cus.id, "pending_invoice_items_behavior": "include"})
    return client.v1.invoices.finalize_invoice(draft.id)


def test_an_invoice_embeds_ten_lines_and_says_there_are_more(client: stripe.StripeClient) -> None:
    invoice = _invoice_of(client, 12)
    assert len(invoice.lines.data) == 10
    assert invoice.lines.has_more is True
    assert invoice.lines.url == f"/v1/invoices/{invoice.id}/lines"
    assert invoice.total == sum(100 + n for n in range(12))
    again = client.v1.invoices.retrieve(invoice.id)
    assert len(again.lines.data) == 10 and again.lines.has_more is True


def test_the_lines_endpoint_pages_through_every_line(client: stripe.StripeClient) -> None:
    invoice = _invoice_of(client, 12)
    first = client.v1.invoices.line_items.list(invoice.id, {"limit": 5})
    assert len(first.data) == 5 and first.has_more is True
    every = list(client.v1.invoices.line_items.list(invoice.id).auto_paging_iter())
    assert [line.amount for line in every] == [100 + n for n in range(12)]
    assert len({line.id for line in every}) == 12


def test_ten_lines_or_fewer_have_no_more(client: stripe.StripeClient) -> None:
    invoice = _invoice_of(client, 10)
    assert len(invoice.lines.data) == 10 and invoice.lines.has_more is False
