from django.db import models
from django.utils import timezone

from common.validators import validate_bullets


class CreditPackage(models.Model):
    """A pack of credits sold for a fixed price (bought through Checkout, or by auto-recharge)."""

    code = models.SlugField(max_length=40, unique=True, help_text="Stable public id, e.g. pack-50.")
    name = models.CharField(max_length=80)
    description = models.CharField(max_length=200, blank=True)
    bullets = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_bullets],
        help_text='Up to six short selling points for the credits page, e.g. ["Never expires"].',
    )
    credits = models.PositiveIntegerField()
    bonus_credits = models.PositiveIntegerField(default=0, help_text="Extra credits for buying in bulk.")
    unit_amount = models.BigIntegerField(help_text="Price in minor units (cents).")
    currency = models.CharField(max_length=3, default="usd")
    is_active = models.BooleanField(default=True)
    sort_order = models.PositiveSmallIntegerField(default=0)
    stripe_price_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["sort_order", "unit_amount", "code"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(credits__gt=0), name="credits_creditpackage_credits_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(unit_amount__gte=0), name="credits_creditpackage_amount_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.total_credits} credits)"

    @property
    def total_credits(self) -> int:
        return self.credits + self.bonus_credits


class CreditPrice(models.Model):
    """What one action costs, as a version: rows are never edited, a new version supersedes.

    The cost of `quantity` units is `ceil(quantity * credits / unit_size)`: integer arithmetic,
    rounded up, so any use of a priced action costs at least one credit.
    """

    action = models.SlugField(max_length=60)
    version = models.PositiveIntegerField()
    credits = models.PositiveIntegerField(help_text="Credits per `unit_size` units.")
    unit = models.CharField(max_length=20, default="call", help_text="What is counted: call, token, image…")
    unit_size = models.PositiveIntegerField(
        default=1, help_text="1 for per-call prices, 1000 for per-1K tokens."
    )
    description = models.CharField(max_length=200, blank=True)
    effective_from = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["action", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["action", "version"], name="credits_creditprice_unique_version"),
            models.CheckConstraint(
                condition=models.Q(unit_size__gte=1), name="credits_creditprice_unit_size_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} v{self.version}: {self.label}"

    @property
    def label(self) -> str:
        credits = f"{self.credits:,} credit{'' if self.credits == 1 else 's'}"
        if self.unit_size == 1:
            return f"{credits} per {self.unit}"
        return f"{credits} per {self.unit_size:,} {self.unit}s"

    def cost(self, quantity: int) -> int:
        # Ceiling division on integers: no float ever touches a credit amount.
        return -(-quantity * self.credits // self.unit_size)
