"""What each organization has: its subscription (with the coupon action), grants, discounts,
trials, checkouts, add-on purchases and duplicate subscriptions."""

import stripe
from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.html import format_html

from billing import discounts, entitlements
from billing.models import (
    AddonPurchase,
    Coupon,
    EntitlementGrant,
    OrgSubscription,
    PlanCheckout,
    SubscriptionDiscount,
    SubscriptionDuplicate,
    TrialRecord,
)
from billing.subscriptions.sync import subscription_sync
from common.admin import ReadOnlyAdmin
from common.errors import ServiceError
from teams.access import client_ip


@admin.register(EntitlementGrant)
class EntitlementGrantAdmin(admin.ModelAdmin):
    list_display = ["__str__", "source", "feature", "starts_at", "expires_at", "reason"]
    list_filter = ["source", "feature", "unlimited"]
    search_fields = ["reason", "reference", "organizations__slug", "organizations__name"]
    autocomplete_fields = ["organizations"]
    date_hierarchy = "created_at"

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        org_ids = list(form.instance.organizations.values_list("pk", flat=True))
        transaction.on_commit(lambda: [entitlements.invalidate(pk) for pk in org_ids])


@admin.register(OrgSubscription)
class OrgSubscriptionAdmin(admin.ModelAdmin):
    list_display = [
        "organization",
        "plan",
        "status",
        "seats",
        "current_period_end",
        "cancel_at_period_end",
        "stripe_subscription_id",
    ]
    list_filter = ["status", "plan", "cancel_at_period_end"]
    search_fields = ["organization__slug", "organization__name", "stripe_subscription_id"]
    autocomplete_fields = ["organization"]
    list_select_related = ["organization", "plan"]
    readonly_fields = ["apply_coupon"]

    actions = ["sync_from_stripe"]

    @admin.display(description="Coupon")
    def apply_coupon(self, obj):
        if obj.pk is None or not obj.stripe_subscription_id:
            return "-"
        url = reverse("admin:billing_orgsubscription_coupon", args=[obj.pk])
        return format_html('<a href="{}">Apply a coupon</a>', url)

    def get_urls(self):
        extra = [
            path(
                "<int:pk>/coupon/",
                self.admin_site.admin_view(self.coupon_view),
                name="billing_orgsubscription_coupon",
            )
        ]
        return extra + super().get_urls()

    def coupon_view(self, request, pk: int):
        """Give this one organization's subscription a coupon: Stripe applies it from the next
        invoice; the change is an audit event of the organization."""
        subscription = get_object_or_404(
            OrgSubscription.objects.select_related("organization", "plan"), pk=pk
        )
        if not self.has_change_permission(request, subscription):
            return redirect("admin:index")
        form = ApplyCouponForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                applied = discounts.subscription_coupon_apply(
                    organization=subscription.organization,
                    coupon=form.cleaned_data["coupon"],
                    actor=request.user,
                    ip_address=client_ip(request),
                )
            except ServiceError as error:
                form.add_error("coupon" if error.field == "coupon" else None, error.message)
            except stripe.StripeError:
                form.add_error(None, "Stripe did not answer; nothing changed. Try again.")
            else:
                messages.success(request, f"{applied.coupon} applied to {subscription.organization}.")
                return redirect("admin:billing_orgsubscription_change", subscription.pk)
        context = {
            **self.admin_site.each_context(request),
            "subscription": subscription,
            "current": discounts.live_discounts(subscription.organization),
            "form": form,
            "opts": self.model._meta,
            "title": "Apply a coupon",
        }
        return render(request, "billing/admin/apply_coupon.html", context)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        transaction.on_commit(lambda: entitlements.invalidate(obj.organization_id))

    @admin.action(description="Sync from Stripe")
    def sync_from_stripe(self, request, queryset):
        synced = 0
        for subscription in queryset.exclude(stripe_subscription_id=None):
            if subscription_sync(subscription_id=subscription.stripe_subscription_id):
                synced += 1
        self.message_user(request, f"{synced} subscription(s) synced from Stripe.")


class ApplyCouponForm(forms.Form):
    coupon = forms.ModelChoiceField(
        queryset=Coupon.objects.filter(is_active=True).exclude(stripe_coupon_id="")
    )


@admin.register(SubscriptionDiscount)
class SubscriptionDiscountAdmin(ReadOnlyAdmin):
    list_display = ["organization", "coupon", "promotion_code", "starts_at", "ends_at", "ended_at"]
    list_filter = ["coupon"]
    search_fields = [
        "organization__slug",
        "organization__name",
        "stripe_subscription_id",
        "stripe_discount_id",
    ]
    list_select_related = ["organization", "coupon", "promotion_code"]


@admin.register(TrialRecord)
class TrialRecordAdmin(ReadOnlyAdmin):
    """The one trial each organization (and Stripe customer) had: what refuses a second."""

    list_display = ["started_at", "organization", "stripe_customer_id", "stripe_subscription_id", "trial_end"]
    search_fields = ["organization__slug", "stripe_customer_id", "stripe_subscription_id"]
    list_select_related = ["organization"]


@admin.register(SubscriptionDuplicate)
class SubscriptionDuplicateAdmin(ReadOnlyAdmin):
    """Second live subscriptions that were canceled and refunded."""

    list_display = [
        "detected_at",
        "organization",
        "stripe_subscription_id",
        "kept_subscription_id",
        "amount_refunded",
        "currency",
        "resolved_at",
    ]
    search_fields = ["organization__slug", "stripe_subscription_id", "kept_subscription_id"]
    list_select_related = ["organization"]


@admin.register(AddonPurchase)
class AddonPurchaseAdmin(ReadOnlyAdmin):
    """Every add-on bought after subscribing, its Stripe session or subscription item, and how it
    stands (granted, ending with the period, abandoned, failed)."""

    list_display = ["created_at", "organization", "addon", "quantity", "status", "granted_at", "ends_at"]
    list_filter = ["status", "addon"]
    search_fields = ["organization__slug", "stripe_checkout_session_id", "stripe_subscription_item_id"]
    list_select_related = ["organization", "addon"]


@admin.register(PlanCheckout)
class PlanCheckoutAdmin(ReadOnlyAdmin):
    """Every subscription checkout Tally opened and how it ended (expired, payment failed...)."""

    list_display = ["created_at", "organization", "plan", "status", "failure_message", "settled_at"]
    list_filter = ["status", "plan"]
    search_fields = ["organization__slug", "stripe_session_id"]
    list_select_related = ["organization", "plan"]
