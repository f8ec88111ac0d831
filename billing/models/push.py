"""Where each catalog object stands with Stripe, and the prices a line item has sold at."""

from django.db import models
from django.utils import timezone

from billing.models.catalog import PlanLineItem


class CatalogStripeState(models.Model):
    """One catalog object's push to Stripe. An edit bumps `version` and marks it pending; a push
    holds a lease (never a lock across the Stripe calls), and records success only if the version
    it pushed is still the latest (compare-and-swap), so two pushes of one object never race."""

    class Kind(models.TextChoices):
        PRODUCT = "product", "Product"
        PLAN = "plan", "Plan"
        ADDON = "addon", "Add-on"
        COUPON = "coupon", "Coupon"
        FEATURE = "feature", "Feature"
        CREDIT_PACKAGE = "credit_package", "Credit package"

    class Status(models.TextChoices):
        IN_SYNC = "in_sync", "In sync"
        PENDING = "pending", "Pending"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    object_id = models.PositiveBigIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    version = models.PositiveIntegerField(default=0)
    pushed_version = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, help_text="Stripe's answer to the last failed push.")
    lease_token = models.CharField(max_length=32, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    attempted_at = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "object_id"], name="billing_catalogstripestate_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.object_id}: {self.status}"


class PriceChange(models.TextChoices):
    """What happens to existing subscribers when a line item's amount changes."""

    KEEP = "keep", "Existing subscribers keep their price (grandfathered)"
    MIGRATE = "migrate", "Existing subscribers move to the new price at their next renewal"


class PriceVersion(models.Model):
    """A Stripe price a line item has sold at. The newest is the one sold; older ones are
    archived in Stripe and kept by their subscribers, unless `migrate` moves them at renewal."""

    line_item = models.ForeignKey(PlanLineItem, on_delete=models.CASCADE, related_name="versions")
    stripe_price_id = models.CharField(max_length=255, unique=True)
    unit_amount = models.BigIntegerField(null=True, blank=True)
    tiers = models.JSONField(default=list, blank=True)
    on_change = models.CharField(
        max_length=16,
        choices=PriceChange.choices,
        default=PriceChange.KEEP,
        help_text="Chosen when this price replaced the one before: whether that one's subscribers move.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["line_item", "-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.line_item}: {self.stripe_price_id}"


class PriceMigration(models.Model):
    """One subscription moving from an older price to the one sold now, at its next renewal:
    the notice sent a set number of days before, and the move made just before the renewal."""

    # The distribution column (see config/tenancy.py): indexed by the unique constraint below.
    organization = models.ForeignKey(
        "teams.Organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    subscription = models.ForeignKey(
        "billing.OrgSubscription", on_delete=models.CASCADE, related_name="price_migrations"
    )
    from_price_id = models.CharField(max_length=255)
    to_price_id = models.CharField(max_length=255)
    renews_at = models.DateTimeField()
    notice_sent_at = models.DateTimeField(null=True, blank=True)
    migrated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "subscription", "from_price_id", "to_price_id"],
                name="billing_pricemigration_org_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subscription}: {self.from_price_id} → {self.to_price_id}"
