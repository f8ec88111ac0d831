"""An organization's billing details for tax: its address and tax ID, as on its Stripe customer.

Stripe Tax computes tax from the customer's address and tax IDs. They are entered at Checkout
or on the billing page; this row mirrors what the Stripe customer holds, so pages and the
checkout read them without asking Stripe.
"""

import re

from django.db import models
from django.utils import timezone

# EU VAT numbers by their country prefix (Greece's is EL), the formats Stripe accepts.
EU_VAT_FORMATS = {
    "AT": r"U\d{8}",
    "BE": r"[01]\d{9}",
    "BG": r"\d{9,10}",
    "CY": r"\d{8}[A-Z]",
    "CZ": r"\d{8,10}",
    "DE": r"\d{9}",
    "DK": r"\d{8}",
    "EE": r"\d{9}",
    "EL": r"\d{9}",
    "ES": r"[A-Z0-9]\d{7}[A-Z0-9]",
    "FI": r"\d{8}",
    "FR": r"[A-HJ-NP-Z0-9]{2}\d{9}",
    "HR": r"\d{11}",
    "HU": r"\d{8}",
    "IE": r"\d{7}[A-W][A-IW]?|\d[A-Z+*]\d{5}[A-W]",
    "IT": r"\d{11}",
    "LT": r"\d{9}|\d{12}",
    "LU": r"\d{8}",
    "LV": r"\d{11}",
    "MT": r"\d{8}",
    "NL": r"\d{9}B\d{2}",
    "PL": r"\d{10}",
    "PT": r"\d{9}",
    "RO": r"\d{2,10}",
    "SE": r"\d{12}",
    "SI": r"\d{8}",
    "SK": r"\d{10}",
}
EU_COUNTRIES = {"GR" if code == "EL" else code for code in EU_VAT_FORMATS}


def normalize_vat(value: str) -> str:
    return re.sub(r"[\s.\-]", "", value or "").upper()


def vat_problem(value: str, country: str) -> str | None:
    """Why an EU VAT number is not one (None: its format is right and it fits the country)."""
    vat = normalize_vat(value)
    prefix, body = vat[:2], vat[2:]
    pattern = EU_VAT_FORMATS.get(prefix)
    if pattern is None:
        return "An EU VAT number starts with its country's code, e.g. DE123456789."
    if not re.fullmatch(pattern, body):
        return f"That is not the format of a VAT number of {prefix}."
    if country and ("GR" if prefix == "EL" else prefix) != country:
        return f"A VAT number of {prefix} does not go with an address in {country}."
    return None


class BillingProfile(models.Model):
    organization = models.OneToOneField(
        "teams.Organization", on_delete=models.CASCADE, related_name="billing_profile"
    )
    business_name = models.CharField(max_length=200, blank=True)
    line1 = models.CharField(max_length=200, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    city = models.CharField(max_length=100, blank=True)
    state = models.CharField(
        max_length=3, blank=True, help_text="State or region, e.g. NY: what US sales tax is computed from."
    )
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166 code, e.g. DE.")
    vat_number = models.CharField(max_length=32, blank=True)
    stripe_tax_id = models.CharField(max_length=255, blank=True)
    vat_status = models.CharField(max_length=16, blank=True, help_text="Stripe's verification status.")
    updated_at = models.DateTimeField(default=timezone.now)
    stripe_synced_at = models.DateTimeField(
        null=True, blank=True, help_text="When the Stripe customer last carried these details."
    )

    def __str__(self) -> str:
        return f"{self.organization} ({self.country or 'no country'})"

    @property
    def push_pending(self) -> bool:
        """Edited here since the Stripe customer last carried the details."""
        return self.stripe_synced_at is None or self.stripe_synced_at < self.updated_at

    @property
    def reverse_charged(self) -> bool:
        """An EU business with a VAT number accounts for the VAT itself (Stripe Tax decides)."""
        return bool(self.vat_number) and self.country in EU_COUNTRIES and self.vat_status != "unverified"
