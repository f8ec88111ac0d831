"""The organization's Stripe customer."""

import hashlib
import json

import stripe
from djstripe.models import Customer

from billing import selectors
from billing.gateway.client import stripe_client
from teams.models import Organization


def customer_ensure(*, organization: Organization, test_clock: str | None = None) -> str:
    """The organization's Stripe customer id, creating the customer once.

    The idempotency key makes two concurrent first checkouts create one customer; the metadata
    lets dj-stripe (and a person in the dashboard) link it back to the organization.
    """
    existing = selectors.stripe_customer_id_of(organization)
    if existing:
        return existing
    params = {
        "name": organization.name,
        "metadata": {"djstripe_subscriber": str(organization.pk), "tally_org": organization.slug},
    }
    # Stripe refuses an empty email (nothing to unset on a new customer): leave it out.
    if organization.email:
        params["email"] = organization.email
    if test_clock:
        params["test_clock"] = test_clock
    remote = stripe_client().v1.customers.create(
        params, {"idempotency_key": f"tally-customer-{organization.pk}"}
    )
    Customer.sync_from_stripe_data(remote)
    Customer.objects.filter(id=remote.id).update(subscriber=organization)
    return remote.id


def customer_details_push(
    *, customer_id: str, name: str, email: str, address: dict, vat_number: str, version: str
) -> dict:
    """Set the customer's name, email, address and EU VAT number to these, whatever they were.

    Idempotent: each call carries keys made of the values and `version` (when the values were
    last edited), so a retry replays the same writes and an edit back to earlier values is
    still applied. Returns the customer's EU VAT tax id after the push, or {} without one.
    Raises stripe.InvalidRequestError when Stripe refuses the VAT number.
    """
    client = stripe_client()
    remote = client.v1.customers.retrieve(customer_id, {"expand": ["tax_ids"]})
    existing = [t for t in (remote.get("tax_ids") or {}).get("data", []) if t.type == "eu_vat"]
    kept = next((t for t in existing if t.value == vat_number), None) if vat_number else None
    if vat_number and kept is None:
        kept = client.v1.customers.tax_ids.create(
            customer_id,
            {"type": "eu_vat", "value": vat_number},
            {"idempotency_key": _key("tax-id", customer_id, vat_number, version)},
        )
    # Stripe unsets a field given as an empty string.
    params: dict = {"address": {k: v for k, v in address.items() if v} or "", "name": name or ""}
    if email:
        params["email"] = email
    client.v1.customers.update(
        customer_id, params, {"idempotency_key": _key("details", customer_id, params, version)}
    )
    for old in existing:
        if kept is None or old.id != kept.id:
            try:
                client.v1.customers.tax_ids.delete(customer_id, old.id)
            except stripe.InvalidRequestError as error:
                if error.code != "resource_missing":  # deleted by an earlier try
                    raise
    if kept is None:
        return {}
    return {
        "id": kept.id,
        "value": kept.value,
        "status": (kept.get("verification") or {}).get("status") or "",
    }


def _key(*parts) -> str:
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:40]
    return f"tally-customer-{digest}"
