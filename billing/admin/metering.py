"""Usage: counters, alerts, the usage event log and the meter reports sent to Stripe."""

from django.contrib import admin, messages

from billing import metering
from billing.models import MeterReport, UsageAlert, UsageCounter, UsageDay, UsageEvent
from common.admin import ReadOnlyAdmin


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


@admin.register(UsageDay)
class UsageDayAdmin(ReadOnlyAdmin):
    list_display = ["day", "organization", "meter", "feature", "total", "events", "distinct_new"]
    list_filter = ["meter", "feature"]
    search_fields = ["organization__slug"]
    date_hierarchy = "day"
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
