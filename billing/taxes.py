"""Tax on invoices as people read it: one line per tax rate, or the reverse-charge note."""

from billing.gateway.client import stripe_client


def tax_lines(invoice) -> list[tuple[str, int]]:
    """("VAT 19% (DE)", 931) or ("Sales Tax 4% (New York)", 196) for tax added to the invoice;
    ("incl. VAT 20% (FR)", 817) for tax inside the prices (not added again); ("Reverse charge:
    ...", 0) when the customer accounts for the VAT itself."""
    rates: dict[str, object] = {}
    lines = []
    for entry in invoice.get("total_taxes") or []:
        reason = entry.get("taxability_reason")
        if reason == "reverse_charge":
            lines.append(("Reverse charge: VAT to be accounted for by the customer", 0))
            continue
        if reason == "not_collecting" or not entry.amount:
            continue
        rate_id = (entry.get("tax_rate_details") or {}).get("tax_rate")
        if rate_id and rate_id not in rates:
            rates[rate_id] = stripe_client().v1.tax_rates.retrieve(rate_id)
        rate = rates.get(rate_id)
        label = "Tax"
        if rate is not None:
            # A US state's sales tax names the state, as Stripe's rate does ("Sales Tax 4% (New York)").
            place = rate.get("jurisdiction") if rate.get("state") else rate.get("country")
            label = f"{rate.display_name} {rate.percentage:g}%" + (f" ({place})" if place else "")
        if entry.tax_behavior == "inclusive":
            lines.append((f"incl. {label}", entry.amount))
        else:
            lines.append((label, entry.amount))
    return lines
