"""Payments, disputes and the billing profile Stripe's customer holds."""

from django.contrib import admin

from billing.models import BillingProfile, Payment, PaymentDispute
from common.admin import ReadOnlyAdmin


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "organization",
        "number",
        "status",
        "amount_paid",
        "amount_refunded",
        "currency",
        "billing_reason",
    ]
    list_filter = ["status", "billing_reason", "currency"]
    search_fields = ["organization__slug", "number", "stripe_invoice_id", "stripe_charge_id"]
    list_select_related = ["organization"]


@admin.register(PaymentDispute)
class PaymentDisputeAdmin(ReadOnlyAdmin):
    list_display = [
        "opened_at",
        "organization",
        "stripe_dispute_id",
        "amount",
        "currency",
        "reason",
        "status",
    ]
    list_filter = ["status", "reason"]
    search_fields = ["organization__slug", "stripe_dispute_id", "stripe_charge_id"]


@admin.register(BillingProfile)
class BillingProfileAdmin(ReadOnlyAdmin):
    """What the Stripe customer holds (address, VAT number): edited on the billing page."""

    list_display = ["organization", "country", "business_name", "vat_number", "vat_status", "updated_at"]
    list_filter = ["country", "vat_status"]
    search_fields = ["organization__slug", "organization__name", "business_name", "vat_number"]
    list_select_related = ["organization"]
