"""An organization's billing address and VAT number: edited on the billing page (or entered at
Checkout), kept on its Stripe customer, mirrored in `BillingProfile`."""

import hashlib
import json

import stripe
from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing import selectors
from billing.gateway.client import stripe_client
from billing.gateway.customers import customer_details_push, customer_ensure
from billing.models import BillingProfile
from billing.models.tax import normalize_vat, vat_problem
from billing.webhooks.registry import Payload, on
from common.errors import ServiceError
from teams.models import Organization, User
from teams.services import audit_record, organization_updated_register

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

# The USPS codes of the states and DC: Stripe Tax computes US sales tax from the state.
_US_STATE_CODES = "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY"  # noqa: E501
US_STATES = frozenset(_US_STATE_CODES.split(" "))


def billing_profile_sync(*, customer_id: str) -> BillingProfile | None:
    """Mirror the Stripe customer's address, name and EU VAT number (edited at Checkout, in the
    portal or the dashboard). An edit made here and not pushed yet is kept: Stripe's copy is
    older than it, and the push that follows makes the two agree."""
    organization = selectors.organization_for_customer(customer_id)
    if organization is None:
        return None
    remote = stripe_client().v1.customers.retrieve(customer_id, {"expand": ["tax_ids"]})
    address = remote.get("address") or {}
    vat = next((t for t in (remote.get("tax_ids") or {}).get("data", []) if t.type == "eu_vat"), None)
    now = timezone.now()
    values = {
        "business_name": remote.get("name") or "",
        "line1": address.get("line1") or "",
        "postal_code": address.get("postal_code") or "",
        "city": address.get("city") or "",
        "state": address.get("state") or "",
        "country": address.get("country") or "",
        "vat_number": vat.value if vat else "",
        "stripe_tax_id": vat.id if vat else "",
        "vat_status": (vat.verification or {}).get("status") or "" if vat else "",
        "updated_at": now,
        "stripe_synced_at": now,
    }
    with transaction.atomic():
        profile = BillingProfile.objects.select_for_update().filter(organization=organization).first()
        if profile is not None and profile.push_pending:
            return profile
        profile, _ = BillingProfile.objects.update_or_create(organization=organization, defaults=values)
    return profile


def billing_details_update(
    *,
    organization: Organization,
    actor: User,
    country: str,
    business_name: str = "",
    line1: str = "",
    postal_code: str = "",
    city: str = "",
    state: str = "",
    vat_number: str = "",
) -> BillingProfile:
    """Set the address tax is computed from and, for an EU business, its VAT number (its format
    checked here; nothing changes when it is wrong). Saved here, then pushed to the Stripe
    customer after the commit (`billing_details_push`), where Stripe checks the number again."""
    country = (country or "").strip().upper()
    if country not in COUNTRIES:
        raise ServiceError("invalid_country", "Choose the country of your billing address.", field="country")
    state = (state or "").strip().upper()
    if country == "US" and state not in US_STATES:
        # Sales tax is the state's: without it Stripe Tax would have to guess from the ZIP code.
        raise ServiceError(
            "invalid_state", "Choose the state of your US billing address, e.g. NY.", field="state"
        )
    vat = normalize_vat(vat_number)
    if vat:
        problem = vat_problem(vat, country)
        if problem:
            raise ServiceError("invalid_vat_number", problem, field="vat_number")
    values = {
        "country": country,
        "business_name": business_name.strip(),
        "line1": line1.strip(),
        "postal_code": postal_code.strip(),
        "city": city.strip(),
        "state": state[:3],
    }
    with transaction.atomic():
        profile, _ = BillingProfile.objects.select_for_update().get_or_create(organization=organization)
        if profile.vat_number != vat:
            profile.vat_number, profile.stripe_tax_id, profile.vat_status = vat, "", ""
        for name, value in values.items():
            setattr(profile, name, value)
        profile.updated_at = timezone.now()
        profile.save()
        audit_record(
            organization=organization,
            action="billing.details_updated",
            actor=actor,
            target=country,
            data={"vat_number": vat or None, "business_name": values["business_name"] or None},
        )
        push_billing_details.delay_on_commit(organization.pk)
    return profile


def billing_details_push(*, organization: Organization) -> BillingProfile | None:
    """Make the Stripe customer carry the billing address, name, email and VAT number (what its
    invoices show). Safe to run again: the gateway's writes are keyed by the values and their
    version, and a newer edit made meanwhile is pushed by its own run."""
    profile = BillingProfile.objects.filter(organization=organization).first()
    customer_id = customer_ensure(organization=organization)
    if profile is None:
        # Only the email to carry (changed in the organization's settings).
        stripe_client().v1.customers.update(
            customer_id,
            {"email": organization.email} if organization.email else {},
            {"idempotency_key": _key(customer_id, organization.email, "email")},
        )
        return None
    version = profile.updated_at.isoformat()
    address = {
        "country": profile.country,
        "line1": profile.line1,
        "postal_code": profile.postal_code,
        "city": profile.city,
        "state": profile.state,
    }
    try:
        vat = customer_details_push(
            customer_id=customer_id,
            name=profile.business_name or organization.name,
            email=organization.email,
            address=address,
            vat_number=profile.vat_number,
            version=version,
        )
    except stripe.InvalidRequestError:
        # Stripe refused the VAT number: the address is not pushed with it; the billing page
        # shows the number as refused until it is corrected.
        BillingProfile.objects.filter(pk=profile.pk, updated_at=profile.updated_at).update(
            vat_status="refused"
        )
        return profile
    BillingProfile.objects.filter(pk=profile.pk, updated_at=profile.updated_at).update(
        stripe_tax_id=vat.get("id", ""),
        vat_status=vat.get("status", ""),
        stripe_synced_at=timezone.now(),
    )
    profile.refresh_from_db()
    return profile


@shared_task(
    name="billing.tasks.push_billing_details",
    autoretry_for=(OSError, stripe.APIConnectionError, stripe.RateLimitError),
    retry_backoff=True,
    max_retries=8,
)
def push_billing_details(organization_id: int) -> None:
    organization = Organization.objects.filter(pk=organization_id).first()
    if organization is not None:
        billing_details_push(organization=organization)


def _organization_updated(*, organization: Organization, changed: dict) -> None:
    """The billing email (or the name) changed in the organization's settings: the customer
    follows, after the commit."""
    if {"billing_email", "name"} & set(changed) and selectors.stripe_customer_id_of(organization):
        push_billing_details.delay_on_commit(organization.pk)


organization_updated_register(_organization_updated)


def _key(*parts) -> str:
    return "tally-details-" + hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:40]


@on(
    "customer.updated",
    "customer.tax_id.created",
    "customer.tax_id.updated",
    "customer.tax_id.deleted",
    payload=True,
)
def _customer_changed(*, kind: str, object_id: str, payload: Payload) -> None:
    """Only the address, name and tax IDs matter here, and only when Stripe Tax is on."""
    if not settings.USE_STRIPE_TAX:
        return None
    data = payload()
    if kind == "customer.updated":
        if data and not {"address", "name"} & set(data.get("previous_attributes") or {}):
            return None
        customer_id = object_id
    else:
        customer_id = (data.get("object") or {}).get("customer")
    if customer_id:
        billing_profile_sync(customer_id=customer_id)
    return None
