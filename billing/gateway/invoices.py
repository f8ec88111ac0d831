"""Reading an invoice's lines: Stripe embeds the first ten, the rest are paged from its list."""

from billing.gateway.client import stripe_client


def invoice_lines_all(invoice, *, client=None) -> list:
    """Every line of `invoice` (retrieved from Stripe), in Stripe's order."""
    lines = invoice.lines
    if not lines.has_more:
        return list(lines.data)
    client = client or stripe_client()
    return list(client.v1.invoices.line_items.list(invoice.id, {"limit": 100}).auto_paging_iter())
