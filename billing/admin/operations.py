"""Operations: Stripe events as handled, the billing emails sent, seat syncs still due."""

from django.contrib import admin

from billing.models import Notice, NoticePreference, SeatSyncDue, StripeEventOutcome
from common.admin import ReadOnlyAdmin


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


@admin.register(SeatSyncDue)
class SeatSyncDueAdmin(ReadOnlyAdmin):
    """Membership changes Stripe may not have yet; a row older than a few minutes means the
    seat syncs are not running (no worker or no beat)."""

    list_display = ("organization", "since", "last")
    search_fields = ("organization__slug",)
    list_select_related = ["organization"]
