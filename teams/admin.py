from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from common.admin import ReadOnlyAdmin, TabularInline
from teams.forms import AdminLoginForm
from teams.models import ApiKey, AuditEvent, Invitation, Membership, Organization, QueuedTask, User
from teams.models_twofactor import RecoveryCode, TwoFactor

# The admin's sign-in is throttled like the site's.
admin.site.login_form = AdminLoginForm


class MembershipInline(TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "name", "is_active", "is_staff", "date_joined", "last_login"]
    list_filter = ["is_active", "is_staff", "is_superuser"]
    search_fields = ["email", "name"]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        ("Profile", {"fields": ["name"]}),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "billing_email", "is_personal", "created_at"]
    list_filter = ["is_personal", "created_at"]
    search_fields = ["name", "slug", "billing_email", "memberships__user__email"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__email", "organization__name", "organization__slug"]
    autocomplete_fields = ["user", "organization"]
    list_select_related = ["user", "organization"]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "organization", "role", "status", "sent_at", "expires_at"]
    list_filter = ["status", "role"]
    search_fields = ["email", "organization__name", "organization__slug"]
    readonly_fields = ["code", "nonce", "created_at", "accepted_by", "accepted_at"]
    list_select_related = ["organization"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "organization", "created_by", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "organization__name", "organization__slug"]
    readonly_fields = ["code", "prefix", "digest", "created_at", "last_used_at"]
    list_select_related = ["organization", "created_by"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """Read-only: the audit log is evidence, so nobody edits or deletes it here."""

    list_display = ["created_at", "organization", "action", "actor", "target", "ip_address"]
    list_filter = ["action"]
    search_fields = ["action", "target", "organization__slug", "actor__email"]
    date_hierarchy = "created_at"
    list_select_related = ["organization", "actor"]


@admin.register(QueuedTask)
class QueuedTaskAdmin(ReadOnlyAdmin):
    """Tasks waiting in the outbox for the broker (the relay publishes them)."""

    list_display = ("task", "created_at", "not_before", "attempts", "claimed_until")
    search_fields = ("task", "task_id")


class RecoveryCodeInline(TabularInline):
    model = RecoveryCode
    extra = 0
    fields = ["used_at"]
    readonly_fields = ["used_at"]
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(TwoFactor)
class TwoFactorAdmin(ReadOnlyAdmin):
    """Who signs in with a second factor. The secret is never shown; deleting the row is how
    staff turn it off for someone who lost both their phone and their recovery codes."""

    list_display = ("user", "confirmed_at", "created_at")
    fields = ("user", "confirmed_at", "created_at")
    search_fields = ("user__email",)
    list_select_related = ["user"]
    inlines = [RecoveryCodeInline]

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser
