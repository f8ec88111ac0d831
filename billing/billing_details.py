"""An organization's billing address and VAT number: edited on the billing page (or entered at
Checkout), kept on its Stripe customer, mirrored in `BillingProfile`."""

import hashlib
import json

import stripe
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from djstripe.models import Event

from billing import selectors
from billing.gateway.client import stripe_client
from billing.gateway.customers import customer_ensure
from billing.models import BillingProfile
from billing.models.tax import normalize_vat, vat_problem
from billing.webhooks.registry import on
from common.errors import ServiceError
from teams.models import Organization, User
from teams.services import audit_record

COUNTRIES = [
    "AT",
    "BE",
    "BG",
    "CY",
    "CZ",
    "DE",
    "DK",
    "EE",
    "ES",
    "FI",
    "FR",
    "GR",
    "HR",
    "HU",
    "IE",
    "IT",
    "LT",
    "LU",
    "LV",
    "MT",
    "NL",
    "PL",
    "PT",
    "RO",
    "SE",
    "SI",
    "SK",
    "GB",
    "NO",
    "CH",
    "US",
    "CA",
    "AU",
    "JP",
]


def billing_profile_sync(*, customer_id: str) -> BillingProfile | None:
    """Mirror the Stripe customer's address, name and EU VAT number."""
    organization = selectors.organization_for_customer(customer_id)
    if organization is None:
        return None
    remote = stripe_client().v1.customers.retrieve(customer_id, {"expand": ["tax_ids"]})
    address = remote.get("address") or {}
    vat = next((t for t in (remote.get("tax_ids") or {}).get("data", []) if t.type == "eu_vat"), None)
    values = {
        "business_name": remote.get("name") or "",
        "line1": address.get("line1") or "",
        "postal_code": address.get("postal_code") or "",
        "city": address.get("city") or "",
        "country": address.get("country") or "",
        "vat_number": vat.value if vat else "",
        "stripe_tax_id": vat.id if vat else "",
        "vat_status": (vat.verification or {}).get("status") or "" if vat else "",
        "updated_at": timezone.now(),
    }
    profile, _ = BillingProfile.objects.update_or_create(organization=organization, defaults=values)
    return profile


def _key(*parts) -> str:
    return "tally-details-" + hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:40]


def billing_details_update(
    *,
    organization: Organization,
    actor: User,
    country: str,
    business_name: str = "",
    line1: str = "",
    postal_code: str = "",
    city: str = "",
    vat_number: str = "",
) -> BillingProfile:
    """Set the address tax is computed from and, for an EU business, its VAT number (format
    checked here, then by Stripe). Nothing changes when either refuses."""
    country = (country or "").strip().upper()
    if country not in COUNTRIES:
        raise ServiceError("invalid_country", "Choose the country of your billing address.", field="country")
    vat = normalize_vat(vat_number)
    if vat:
        problem = vat_problem(vat, country)
        if problem:
            raise ServiceError("invalid_vat_number", problem, field="vat_number")
    customer_id = customer_ensure(organization=organization)
    client = stripe_client()
    remote = client.v1.customers.retrieve(customer_id, {"expand": ["tax_ids"]})
    existing = [t for t in (remote.get("tax_ids") or {}).get("data", []) if t.type == "eu_vat"]
    try:
        if vat and not any(t.value == vat for t in existing):
            client.v1.customers.tax_ids.create(
                customer_id, {"type": "eu_vat", "value": vat}, {"idempotency_key": _key(customer_id, vat)}
            )
    except stripe.InvalidRequestError as error:
        raise ServiceError(
            "invalid_vat_number", error.user_message or "Stripe refused the VAT number.", field="vat_number"
        ) from None
    address = {
        "country": country,
        "line1": line1.strip(),
        "postal_code": postal_code.strip(),
        "city": city.strip(),
    }
    params: dict = {"address": {k: v for k, v in address.items() if v}}
    if business_name.strip():
        params["name"] = business_name.strip()
    client.v1.customers.update(customer_id, params)
    for old in existing:
        if old.value != vat:
            client.v1.customers.tax_ids.delete(customer_id, old.id)
    with transaction.atomic():
        audit_record(
            organization=organization,
            action="billing.details_updated",
            actor=actor,
            target=country,
            data={"vat_number": vat or None, "business_name": business_name.strip() or None},
        )
    profile = billing_profile_sync(customer_id=customer_id)
    assert profile is not None  # the customer is the organization's: customer_ensure links it
    return profile


@on("customer.updated", "customer.tax_id.created", "customer.tax_id.updated", "customer.tax_id.deleted")
def _customer_changed(*, kind: str, object_id: str) -> None:
    """Only the address, name and tax IDs matter here, and only when Stripe Tax is on."""
    if not settings.USE_STRIPE_TAX:
        return None
    event = Event.objects.filter(type=kind, data__object__id=object_id).order_by("-created").first()
    data = (event.data or {}) if event is not None else {}
    if kind == "customer.updated":
        if event is not None and not {"address", "name"} & set(data.get("previous_attributes") or {}):
            return None
        customer_id = object_id
    else:
        customer_id = (data.get("object") or {}).get("customer")
    if customer_id:
        billing_profile_sync(customer_id=customer_id)
    return None
