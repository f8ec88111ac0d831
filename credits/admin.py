from django import forms
from django.contrib import admin, messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.html import format_html

from billing.admin.push import StripePushAdmin
from billing.models import CatalogStripeState
from common.admin import ReadOnlyAdmin, TabularInline
from common.errors import ServiceError
from credits import services
from credits.models import (
    CreditAccount,
    CreditAllocation,
    CreditDispute,
    CreditGrant,
    CreditPackage,
    CreditPrice,
    CreditPurchase,
    CreditRecharge,
    CreditReservation,
    CreditTransaction,
    CreditUsageDay,
)
from teams.access import client_ip
from teams.services import audit_record


class AdjustForm(forms.Form):
    amount = forms.IntegerField(help_text="Credits to add (positive) or take away (negative).")
    reason = forms.CharField(max_length=200, help_text="Recorded in the ledger and the audit log.")


@admin.register(CreditAccount)
class CreditAccountAdmin(admin.ModelAdmin):
    list_display = [
        "organization",
        "balance",
        "held",
        "low_balance_threshold",
        "auto_recharge_enabled",
        "adjust",
    ]
    search_fields = ["organization__name", "organization__slug"]
    list_select_related = ["organization"]
    readonly_fields = [
        "organization",
        "balance",
        "held",
        "lifetime_purchased",
        "lifetime_used",
        "low_balance_alerted_at",
        "created_at",
    ]
    fields = [
        *readonly_fields,
        "overdraft_allowance",
        "low_balance_threshold",
        "low_balance_percent",
        "auto_recharge_enabled",
        "auto_recharge_threshold",
        "auto_recharge_package",
        "auto_recharge_monthly_limit",
    ]

    def has_add_permission(self, request):
        return False  # accounts open themselves on first use, with the welcome bonus

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="")
    def adjust(self, obj):
        return format_html(
            '<a href="{}">Adjust balance</a>', reverse("admin:credits_creditaccount_adjust", args=[obj.pk])
        )

    def save_model(self, request, obj, form, change):
        # Write only the settings that changed: saving the whole row would put back a balance
        # read before the form was shown, undoing every spend since.
        changed = {name: getattr(obj, name) for name in form.changed_data}
        if changed:
            CreditAccount.objects.filter(pk=obj.pk).update(**changed)
            audit_record(
                organization=obj.organization,
                action="credits.account_changed",
                actor=request.user,
                target=obj.organization.slug,
                data={k: str(v) for k, v in changed.items()},
                ip_address=client_ip(request),
            )

    def get_urls(self):
        extra = [
            path(
                "<int:pk>/adjust/",
                self.admin_site.admin_view(self.adjust_view),
                name="credits_creditaccount_adjust",
            )
        ]
        return extra + super().get_urls()

    def adjust_view(self, request, pk: int):
        account = get_object_or_404(CreditAccount.objects.select_related("organization"), pk=pk)
        if not self.has_view_permission(request, account) or not request.user.is_staff:
            return redirect("admin:index")
        form = AdjustForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                entry = services.credits_adjust(
                    organization=account.organization,
                    actor=request.user,
                    ip_address=client_ip(request),
                    **form.cleaned_data,
                )
            except ServiceError as error:
                form.add_error(error.field if error.field in form.fields else None, error.message)
            else:
                messages.success(
                    request, f"Balance adjusted by {entry.amount:+}; it is now {entry.balance_after}."
                )
                return redirect("admin:credits_creditaccount_change", account.pk)
        context = {
            **self.admin_site.each_context(request),
            "account": account,
            "form": form,
            "opts": self.model._meta,
        }
        return render(request, "credits/admin/adjust.html", context)


@admin.register(CreditGrant)
class CreditGrantAdmin(ReadOnlyAdmin):
    list_display = ["account", "source", "amount", "remaining", "priority", "expires_at", "created_at"]
    list_filter = ["source"]
    search_fields = ["account__organization__slug", "description"]
    list_select_related = ["account__organization"]


class AllocationInline(TabularInline):
    model = CreditAllocation
    fields = ["grant", "amount"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(CreditTransaction)
class CreditTransactionAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "account", "type", "amount", "balance_after", "action", "description"]
    list_filter = ["type"]
    search_fields = ["account__organization__slug", "description", "reference_id", "idempotency_key"]
    date_hierarchy = "created_at"
    list_select_related = ["account__organization"]
    inlines = [AllocationInline]


@admin.register(CreditReservation)
class CreditReservationAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "account", "status", "amount", "consumed", "action", "expires_at"]
    list_filter = ["status"]
    search_fields = ["account__organization__slug", "reference_id"]
    list_select_related = ["account__organization"]


@admin.register(CreditRecharge)
class CreditRechargeAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "account", "package", "credits", "amount", "status", "failure_code"]
    list_filter = ["status"]
    list_select_related = ["account__organization", "package"]


@admin.register(CreditPurchase)
class CreditPurchaseAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "account",
        "package",
        "credits",
        "bonus_credits",
        "amount",
        "status",
        "processing",
        "failure_message",
    ]
    list_filter = ["status", "processing"]
    search_fields = ["checkout_session_id", "payment_intent_id"]
    list_select_related = ["account__organization", "package"]


@admin.register(CreditDispute)
class CreditDisputeAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "account",
        "stripe_dispute_id",
        "amount",
        "credits",
        "status",
        "stripe_status",
    ]
    list_filter = ["status"]
    search_fields = ["stripe_dispute_id", "payment_intent_id"]
    list_select_related = ["account__organization"]


@admin.register(CreditPackage)
class CreditPackageAdmin(StripePushAdmin):
    stripe_kind = CatalogStripeState.Kind.CREDIT_PACKAGE

    list_display = [
        "code",
        "name",
        "credits",
        "bonus_credits",
        "unit_amount",
        "currency",
        "is_active",
        "sort_order",
    ]
    list_editable = ["is_active", "sort_order"]
    search_fields = ["code", "name"]


@admin.register(CreditPrice)
class CreditPriceAdmin(admin.ModelAdmin):
    """Prices are versions: adding one supersedes the last, and none is ever edited."""

    list_display = ["action", "version", "credits", "unit", "unit_size", "effective_from"]
    list_filter = ["action"]
    fields = ["action", "credits", "unit", "unit_size", "description"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        price = services.credit_price_set(
            action=obj.action,
            credits=obj.credits,
            unit=obj.unit,
            unit_size=obj.unit_size,
            description=obj.description,
        )
        obj.pk, obj.version = price.pk, price.version


@admin.register(CreditUsageDay)
class CreditUsageDayAdmin(ReadOnlyAdmin):
    """The daily consumption rollup the credits page reads (kept by the debits themselves)."""

    list_display = ("account", "day", "action", "credits", "consumptions")
    list_filter = ("day",)
    list_select_related = ("account__organization",)
