"""The catalog: features, products, plans and their line items, add-ons, coupons, meters, and
the record of their pushes and price versions."""

from django import forms
from django.contrib import admin
from django.utils.html import format_html, format_html_join

from billing.admin.push import CatalogAdmin
from billing.catalog.forms import CurrencyOptionsField, TiersField
from billing.catalog.push import catalog_object_touch, subscriptions_per_price
from billing.catalog.tasks import catalog_object_push_task
from billing.models import (
    Addon,
    AddonEntitlement,
    CatalogStripeState,
    Coupon,
    Feature,
    Meter,
    Plan,
    PlanEntitlement,
    PlanLineItem,
    PriceMigration,
    PriceVersion,
    Product,
    PromotionCode,
)
from common.admin import ReadOnlyAdmin, TabularInline


@admin.register(Feature)
class FeatureAdmin(CatalogAdmin):
    stripe_kind = CatalogStripeState.Kind.FEATURE
    list_display = ["key", "name", "kind", "unit", "reset", "sort_order"]
    list_filter = ["kind", "reset"]
    search_fields = ["key", "name"]


class PlanInline(TabularInline):
    model = Plan
    extra = 0
    fields = ["key", "name", "interval", "trial_days", "is_free", "is_active"]
    show_change_link = True


@admin.register(Product)
class ProductAdmin(CatalogAdmin):
    stripe_kind = CatalogStripeState.Kind.PRODUCT
    list_display = ["key", "name", "is_public", "contact_sales", "highlight", "stripe_product_id"]
    list_filter = ["is_public", "contact_sales"]
    search_fields = ["key", "name", "stripe_product_id"]
    inlines = [PlanInline]

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        # A plan edited here (deactivated, say) is pushed as if saved on its own page.
        for formset in formsets:
            if formset.model is not Plan:
                continue
            for plan in [*formset.new_objects, *(obj for obj, _ in formset.changed_objects)]:
                catalog_object_touch(kind=CatalogStripeState.Kind.PLAN, object_id=plan.pk)
                catalog_object_push_task.delay_on_commit(CatalogStripeState.Kind.PLAN, plan.pk)


class LineItemForm(forms.ModelForm):
    tiers = TiersField(
        required=False,
        help_text="One row per tier, in ascending order; leave a row blank to remove it.",
    )
    currency_options = CurrencyOptionsField(
        required=False,
        label="Other currencies",
        help_text="A unit amount or tier rows per currency; clear a currency's fields to remove it.",
    )

    class Meta:
        model = PlanLineItem
        fields = ["key", "kind", "unit_amount", "tiers_mode", "tiers", "currency_options", "feature"]


class LineItemInline(admin.StackedInline):
    model = PlanLineItem
    form = LineItemForm
    extra = 0
    fields = [
        "key",
        "kind",
        "unit_amount",
        "tiers_mode",
        "tiers",
        "currency_options",
        "feature",
        "on_price_change",
        "stripe_price_id",
    ]
    readonly_fields = ["stripe_price_id"]


class PlanEntitlementInline(TabularInline):
    model = PlanEntitlement
    extra = 0
    fields = ["feature", "enabled", "limit", "overage", "warn_at"]


@admin.register(Plan)
class PlanAdmin(CatalogAdmin):
    stripe_kind = CatalogStripeState.Kind.PLAN
    readonly_fields = ["price_versions"]

    @admin.display(description="Price versions (subscriptions on each)")
    def price_versions(self, obj):
        if obj.pk is None:
            return "-"
        counts = subscriptions_per_price()
        versions = PriceVersion.objects.filter(line_item__plan=obj).select_related("line_item")
        rows = [
            (
                version.line_item.key,
                version.stripe_price_id,
                "-" if version.unit_amount is None else version.unit_amount,
                counts.get(version.stripe_price_id, 0),
                "archived" if version.archived_at else "selling",
            )
            for version in versions
        ]
        if not rows:
            return "-"
        items = format_html_join("", "<li>{} · {} · {} · {} subscription(s) · {}</li>", rows)
        return format_html("<ul>{}</ul>", items)

    list_display = ["key", "name", "product", "interval", "currency", "trial_days", "is_free", "is_active"]
    list_filter = ["interval", "is_active", "is_free", "product"]
    search_fields = ["key", "name", "product__name"]
    list_select_related = ["product"]
    inlines = [LineItemInline, PlanEntitlementInline]


class AddonEntitlementInline(TabularInline):
    model = AddonEntitlement
    extra = 0


@admin.register(Addon)
class AddonAdmin(CatalogAdmin):
    stripe_kind = CatalogStripeState.Kind.ADDON
    list_display = ["key", "name", "kind", "unit_amount", "currency", "interval", "max_quantity", "is_active"]
    list_filter = ["kind", "is_active"]
    search_fields = ["key", "name", "stripe_price_id"]
    readonly_fields = ["stripe_product_id", "stripe_price_id"]
    inlines = [AddonEntitlementInline]


class PromotionCodeInline(TabularInline):
    model = PromotionCode
    extra = 0
    fields = [
        "code",
        "is_active",
        "first_time_only",
        "minimum_amount",
        "minimum_amount_currency",
        "expires_at",
        "max_redemptions",
        "stripe_promotion_code_id",
    ]
    readonly_fields = ["stripe_promotion_code_id"]


@admin.register(Coupon)
class CouponAdmin(CatalogAdmin):
    """Coupons are catalog: edits are pushed to Stripe (which keeps a coupon's terms forever, so
    new terms need a new key: a push of changed terms fails and says so)."""

    stripe_kind = CatalogStripeState.Kind.COUPON

    list_display = [
        "key",
        "name",
        "percent_off",
        "amount_off",
        "currency",
        "duration",
        "is_active",
        "stripe_coupon_id",
    ]
    list_filter = ["duration", "is_active"]
    search_fields = ["key", "name", "promotion_codes__code"]
    readonly_fields = ["stripe_coupon_id"]
    filter_horizontal = ["products"]
    inlines = [PromotionCodeInline]


@admin.register(Meter)
class MeterAdmin(CatalogAdmin):
    list_display = ["key", "name", "aggregation", "property", "feature", "is_active"]
    list_filter = ["aggregation", "is_active"]
    search_fields = ["key", "name"]


@admin.register(CatalogStripeState)
class CatalogStripeStateAdmin(ReadOnlyAdmin):
    """Each catalog object's last push to Stripe (the catalog lists show the same per row)."""

    list_display = ["kind", "object_id", "status", "version", "pushed_version", "error", "synced_at"]
    list_filter = ["kind", "status"]
    search_fields = ["error"]


@admin.register(PriceVersion)
class PriceVersionAdmin(ReadOnlyAdmin):
    """Every price a line item has sold at, and how many subscriptions are on each."""

    list_display = ["line_item", "stripe_price_id", "unit_amount", "on_change", "created_at", "archived_at"]
    list_filter = ["on_change", "line_item__plan"]
    search_fields = ["stripe_price_id", "line_item__plan__key"]
    list_select_related = ["line_item__plan"]

    def get_list_display(self, request):
        counts = subscriptions_per_price()  # one read of the live subscriptions for the page

        @admin.display(description="Subscriptions on it")
        def subscriptions(obj):
            return counts.get(obj.stripe_price_id, 0)

        return [*super().get_list_display(request), subscriptions]


@admin.register(PriceMigration)
class PriceMigrationAdmin(ReadOnlyAdmin):
    """Subscribers moving to a plan's new price at their renewal: notice sent, move made."""

    list_display = [
        "subscription",
        "from_price_id",
        "to_price_id",
        "renews_at",
        "notice_sent_at",
        "migrated_at",
    ]
    search_fields = ["subscription__organization__slug", "from_price_id", "to_price_id"]
    list_select_related = ["subscription__organization"]
