"""Small readers of Stripe objects shared by the subscription modules."""

from datetime import UTC, datetime

from django.db import transaction

from billing import entitlements, selectors
from teams.models import Organization


def _ts(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=UTC) if value else None


def _invalidate_on_commit(organization: Organization) -> None:
    transaction.on_commit(lambda: entitlements.invalidate(organization))


def _charge_of(invoice) -> str:
    """The charge that paid an invoice retrieved with `payments.data.payment.payment_intent`."""
    charge_id = ""
    for payment in (invoice.get("payments") or {}).get("data", []):
        intent = (payment.get("payment") or {}).get("payment_intent")
        if intent and not isinstance(intent, str):
            charge_id = intent.get("latest_charge") or charge_id
    return charge_id


def _organization_of(metadata, customer_id: str | None) -> Organization | None:
    org_id = (metadata or {}).get("tally_org_id")
    if org_id:
        organization = Organization.objects.filter(pk=org_id).first()
        if organization:
            return organization
    return selectors.organization_for_customer(customer_id) if customer_id else None
