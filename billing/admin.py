import stripe
from django import forms
from django.contrib import admin, messages
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Subquery
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from billing import discounts, entitlements, metering
from billing.catalog.export import catalog_problems
from billing.catalog.forms import TiersField
from billing.catalog.push import catalog_object_touch, subscriptions_per_price
from billing.catalog.tasks import catalog_object_push_task
from billing.models import (
    Addon,
    AddonEntitlement,
    AddonPurchase,
    BillingProfile,
    CatalogStripeState,
    Coupon,
    EntitlementGrant,
    Feature,
    Meter,
    MeterReport,
    Notice,
    NoticePreference,
    OrgSubscription,
    Payment,
    PaymentDispute,
    Plan,
    PlanCheckout,
    PlanEntitlement,
    PlanLineItem,
    PriceMigration,
    PriceVersion,
    Product,
    PromotionCode,
    StripeEventOutcome,
    SubscriptionDiscount,
    SubscriptionDuplicate,
    TrialRecord,
    UsageAlert,
    UsageCounter,
    UsageEvent,
)
from billing.subscriptions.sync import subscription_sync
from common.admin import ReadOnlyAdmin
from common.errors import ServiceError
from teams.access import client_ip


class _Refused(Exception):
    def __init__(self, problems: list[str]):
        self.problems = problems


class StripePushAdmin(admin.ModelAdmin):
    """An object Stripe holds a copy of (`stripe_kind`): pushed after each save's commit, its
    Stripe state in the list (in sync, pending, failed with Stripe's error), and a "Push to
    Stripe" action that retries."""

    stripe_kind: str | None = None
    actions = ["push_to_stripe"]

    def get_list_display(self, request):
        shown = list(super().get_list_display(request))
        return [*shown, "stripe_state"] if self.stripe_kind else shown

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not self.stripe_kind:
            actions.pop("push_to_stripe", None)
        return actions

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if not self.stripe_kind:
            return queryset
        states = CatalogStripeState.objects.filter(kind=self.stripe_kind, object_id=OuterRef("pk"))
        return queryset.annotate(
            _stripe_status=Subquery(states.values("status")[:1]),
            _stripe_error=Subquery(states.values("error")[:1]),
        )

    @admin.display(description="Stripe")
    def stripe_state(self, obj):
        status = getattr(obj, "_stripe_status", None)
        if status is None:
            return "-"
        label = CatalogStripeState.Status(status).label
        if status == CatalogStripeState.Status.FAILED:
            return format_html(
                '<span class="stripe-failed" title="{0}">{1}: {0}</span>', obj._stripe_error, label
            )
        return format_html('<span class="stripe-{}">{}</span>', status, label)

    def has_push_permission(self, request):
        return self.has_change_permission(request)

    @admin.action(description="Push to Stripe", permissions=["push"])
    def push_to_stripe(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        with transaction.atomic():
            for pk in ids:
                catalog_object_touch(kind=self.stripe_kind, object_id=pk)
                catalog_object_push_task.delay_on_commit(self.stripe_kind, pk)
        states = CatalogStripeState.objects.filter(kind=self.stripe_kind, object_id__in=ids)
        failed = [s for s in states if s.status == CatalogStripeState.Status.FAILED]
        pending = [s for s in states if s.status == CatalogStripeState.Status.PENDING]
        if failed:
            self.message_user(
                request,
                f"{len(failed)} of {len(ids)} failed to reach Stripe: {failed[0].error}",
                messages.ERROR,
            )
        elif pending:
            self.message_user(request, f"{len(ids)} queued for Stripe; the Stripe column shows the outcome.")
        else:
            self.message_user(request, f"{len(ids)} pushed to Stripe.")

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        if self.stripe_kind:
            catalog_object_touch(kind=self.stripe_kind, object_id=form.instance.pk)
            catalog_object_push_task.delay_on_commit(self.stripe_kind, form.instance.pk)


class CatalogAdmin(StripePushAdmin):
    """Catalog edits apply the same validation as the catalog file (each model's `clean`, then
    the file's rules over the whole catalog as saved), make every organization's cached
    entitlements stale, and are pushed to Stripe after the commit.

    An edit the file's rules refuse is rolled back and the form shown again with the problems,
    each naming the field; nothing of it is saved or pushed."""

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if request.method != "POST":
            return super().changeform_view(request, object_id, form_url, extra_context)
        before = set(catalog_problems())
        try:
            with transaction.atomic():
                response = super().changeform_view(request, object_id, form_url, extra_context)
                if response.status_code == 302:  # saved: now the whole catalog, by the file's rules
                    problems = [p for p in catalog_problems() if p not in before]
                    if problems:
                        raise _Refused(problems)
        except _Refused as refused:
            problems = refused.problems
        except IntegrityError as error:
            problems = [f"the database refused the change: {str(error).splitlines()[0]}"]
        else:
            return response
        for _ in messages.get_messages(request):
            pass  # the rolled-back attempt's "changed successfully" is not true
        request._catalog_problems = problems
        return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        problems = getattr(request, "_catalog_problems", None)
        if not problems:
            return form

        class Refused(form):
            def clean(self):
                data = super().clean()
                for problem in problems:
                    field = next(
                        (f for f in self.fields if f" {f}:" in problem or problem.startswith(f"{f}:")), None
                    )
                    self.add_error(field, problem)
                return data

        return Refused

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        transaction.on_commit(entitlements.invalidate_catalog)

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        transaction.on_commit(entitlements.invalidate_catalog)


@admin.register(Feature)
class FeatureAdmin(CatalogAdmin):
    stripe_kind = CatalogStripeState.Kind.FEATURE
    list_display = ["key", "name", "kind", "unit", "reset", "sort_order"]
    list_filter = ["kind", "reset"]
    search_fields = ["key", "name"]


class PlanInline(admin.TabularInline):
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


class PlanEntitlementInline(admin.TabularInline):
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


class AddonEntitlementInline(admin.TabularInline):
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


class PromotionCodeInline(admin.TabularInline):
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


@admin.register(UsageCounter)
class UsageCounterAdmin(ReadOnlyAdmin):
    list_display = ["organization", "feature", "period_start", "period_end", "used"]
    list_filter = ["feature"]
    search_fields = ["organization__slug"]
    list_select_related = ["organization", "feature"]


@admin.register(UsageAlert)
class UsageAlertAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "organization", "feature", "threshold", "used", "limit"]
    list_filter = ["feature", "threshold"]
    search_fields = ["organization__slug"]
    list_select_related = ["organization", "feature"]


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


@admin.register(Meter)
class MeterAdmin(CatalogAdmin):
    list_display = ["key", "name", "aggregation", "property", "feature", "is_active"]
    list_filter = ["aggregation", "is_active"]
    search_fields = ["key", "name"]


@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnlyAdmin):
    list_display = [
        "timestamp",
        "organization",
        "source",
        "meter",
        "feature",
        "value",
        "event_id",
        "received_at",
    ]
    list_filter = ["source", "meter", "feature"]
    search_fields = ["organization__slug", "event_id"]
    date_hierarchy = "timestamp"
    list_select_related = ["organization", "meter", "feature"]


class MeterReportDeliveryFilter(admin.SimpleListFilter):
    """Staff look here first: what Stripe does not have yet, and what keeps failing."""

    title = "delivery"
    parameter_name = "delivery"

    def lookups(self, request, model_admin):
        return [
            ("unsent", "Not in Stripe yet (pending or failed)"),
            ("failed", "Failed: needs attention (still retried)"),
            ("retrying", "Pending after a failed attempt"),
            ("sent", "Sent"),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "unsent":
            return queryset.filter(status__in=MeterReport.UNSENT)
        if value == "failed":
            return queryset.filter(status=MeterReport.Status.FAILED)
        if value == "retrying":
            return queryset.filter(status=MeterReport.Status.PENDING).exclude(last_error="")
        if value == "sent":
            return queryset.filter(status=MeterReport.Status.SENT)
        return queryset


@admin.register(MeterReport)
class MeterReportAdmin(ReadOnlyAdmin):
    """The outbox to Stripe's meters: unsent rows (pending or failed) are retried by
    `usage_report` with back-off; "Retry now" sends the selected ones at once."""

    list_display = [
        "created_at",
        "organization",
        "feature",
        "window",
        "quantity",
        "total",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "sent_at",
    ]
    list_filter = [MeterReportDeliveryFilter, "status", "feature"]
    search_fields = ["organization__slug", "identifier", "stripe_customer_id"]
    list_select_related = ["organization", "feature"]
    actions = ["retry_now"]

    def has_retry_permission(self, request):
        # The outbox is read-only; resending is an operation, for staff allowed to change reports.
        return request.user.has_perm("billing.change_meterreport")

    @admin.action(description="Retry now (send to Stripe)", permissions=["retry"])
    def retry_now(self, request, queryset):
        outcome = metering.meter_report_retry(reports=queryset)
        level = messages.SUCCESS if not (outcome.failed or outcome.retrying) else messages.WARNING
        self.message_user(
            request,
            f"{outcome.sent} report(s) sent to Stripe; {outcome.retrying + outcome.failed} failed again "
            "and will be retried with back-off (see the last error).",
            level,
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


@admin.register(BillingProfile)
class BillingProfileAdmin(ReadOnlyAdmin):
    """What the Stripe customer holds (address, VAT number): edited on the billing page."""

    list_display = ["organization", "country", "business_name", "vat_number", "vat_status", "updated_at"]
    list_filter = ["country", "vat_status"]
    search_fields = ["organization__slug", "organization__name", "business_name", "vat_number"]
    list_select_related = ["organization"]


@admin.register(StripeEventOutcome)
class StripeEventOutcomeAdmin(ReadOnlyAdmin):
    """Each Stripe event as handled: processed, or failed and waiting for its next attempt."""

    list_display = ("event_id", "type", "status", "attempts", "next_attempt_at", "created_at")
    list_filter = ("status", "type")
    search_fields = ("event_id", "object_id")


@admin.register(Notice)
class NoticeAdmin(ReadOnlyAdmin):
    """Every billing email, once per fact it tells of: to whom and when it went (or why not)."""

    list_display = ("organization", "kind", "status", "subject", "created_at", "sent_at")
    list_filter = ("kind", "status")
    search_fields = ("key", "organization__slug", "organization__name", "subject")
    list_select_related = ["organization"]


@admin.register(NoticePreference)
class NoticePreferenceAdmin(ReadOnlyAdmin):
    """The billing emails each contact turned off (on the organization's billing emails page)."""

    list_display = ("organization", "user", "muted", "updated_at")
    search_fields = ("organization__slug", "user__email")
    list_select_related = ["organization", "user"]


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
