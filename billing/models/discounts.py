"""Coupons and promotion codes (catalog), and the discounts Stripe applies with them (state).

A coupon says what comes off and for how long; a promotion code is the word a customer types to
redeem one. Both are defined in `config/catalog.toml`, editable in the admin and pushed to
Stripe like the rest of the catalog. `SubscriptionDiscount` mirrors the discounts Stripe holds on
an organization's subscription, so pages show them without asking Stripe.
"""

import calendar
from datetime import datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Upper
from django.utils import timezone


class Duration(models.TextChoices):
    ONCE = "once", "Once"
    REPEATING = "repeating", "For some months"
    FOREVER = "forever", "Forever"


class Coupon(models.Model):
    key = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=100, help_text="Shown to customers, e.g. 'Launch offer'.")
    percent_off = models.DecimalField(
        max_digits=5, decimal_places=2, null=True, blank=True, help_text="e.g. 20 for 20% off."
    )
    amount_off = models.BigIntegerField(null=True, blank=True, help_text="Minor units (cents).")
    currency = models.CharField(max_length=3, blank=True, help_text="The currency of amount_off.")
    currency_options = models.JSONField(
        default=dict, blank=True, help_text='amount_off in other currencies: {"eur": 450}.'
    )
    duration = models.CharField(max_length=16, choices=Duration.choices, default=Duration.ONCE)
    duration_in_months = models.PositiveIntegerField(null=True, blank=True)
    max_redemptions = models.PositiveIntegerField(null=True, blank=True)
    redeem_by = models.DateTimeField(null=True, blank=True)
    products = models.ManyToManyField(
        "billing.Product", blank=True, related_name="+", help_text="Only these products (none: all)."
    )
    is_active = models.BooleanField(default=True)
    stripe_coupon_id = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["key"]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(percent_off__isnull=False) & models.Q(amount_off__isnull=True))
                | (models.Q(percent_off__isnull=True) & models.Q(amount_off__isnull=False)),
                name="billing_coupon_percent_or_amount",
            ),
            models.CheckConstraint(
                condition=models.Q(percent_off__isnull=True)
                | (models.Q(percent_off__gt=0) & models.Q(percent_off__lte=100)),
                name="billing_coupon_percent_in_range",
            ),
            models.CheckConstraint(
                condition=models.Q(amount_off__isnull=True) | models.Q(amount_off__gt=0),
                name="billing_coupon_amount_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def stripe_id(self) -> str:
        return f"tally_{self.key}"

    def clean(self) -> None:
        errors = coupon_problems(
            percent_off=self.percent_off,
            amount_off=self.amount_off,
            currency=self.currency,
            duration=self.duration,
            duration_in_months=self.duration_in_months,
            currency_options=self.currency_options,
        )
        if errors:
            raise ValidationError(errors)

    def amount_off_in(self, currency: str) -> int | None:
        if self.amount_off is None:
            return None
        if currency == self.currency:
            return self.amount_off
        value = (self.currency_options or {}).get(currency)
        return int(value) if value is not None else None

    def off(self, amount: int, currency: str) -> int:
        """What this coupon takes off one line of `amount` (Stripe rounds per line, half to even)."""
        if amount <= 0:
            return 0
        if self.percent_off is not None:
            return min(round(Decimal(amount) * self.percent_off / 100), amount)
        return min(self.amount_off_in(currency) or 0, amount)

    def ends_for(self, start: datetime) -> datetime | None:
        """When a discount started at `start` stops applying (None: after one invoice, or never)."""
        if self.duration != Duration.REPEATING or not self.duration_in_months:
            return None
        return add_months(start, self.duration_in_months)


def add_months(moment: datetime, months: int) -> datetime:
    """Stripe's months: the same day of month, clamped to the month's length."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def coupon_problems(
    *,
    percent_off,
    amount_off,
    currency: str,
    duration: str,
    duration_in_months,
    currency_options,
) -> list[str]:
    """What makes a coupon's terms unusable; shared by the catalog file and the admin."""
    problems = []
    if (percent_off is None) == (amount_off is None):
        problems.append("give exactly one of percent_off and amount_off")
    if percent_off is not None and not 0 < Decimal(str(percent_off)) <= 100:
        problems.append("percent_off is more than 0 and at most 100")
    if amount_off is not None:
        if not isinstance(amount_off, int) or isinstance(amount_off, bool) or amount_off <= 0:
            problems.append("amount_off is a positive whole number of minor units")
        if not currency:
            problems.append("amount_off needs its currency")
    if currency_options:
        if amount_off is None:
            problems.append("currency_options only go with amount_off")
        if not isinstance(currency_options, dict) or not all(
            isinstance(k, str) and len(k) == 3 and k.islower() and isinstance(v, int) and v > 0
            for k, v in currency_options.items()
        ):
            problems.append('currency_options maps lowercase currencies to positive amounts: {"eur": 450}')
    if duration not in Duration.values:
        problems.append(f"duration is one of {', '.join(Duration.values)}")
    if duration == Duration.REPEATING and not duration_in_months:
        problems.append("a repeating coupon says for how many months (duration_in_months)")
    if duration != Duration.REPEATING and duration_in_months:
        problems.append("only a repeating coupon has duration_in_months")
    return problems


class PromotionCode(models.Model):
    coupon = models.ForeignKey(Coupon, on_delete=models.PROTECT, related_name="promotion_codes")
    code = models.CharField(max_length=64, help_text="What customers type; letters and digits.")
    is_active = models.BooleanField(default=True)
    first_time_only = models.BooleanField(default=False, help_text="Only for customers who never paid.")
    minimum_amount = models.BigIntegerField(null=True, blank=True, help_text="Minor units, first invoice.")
    minimum_amount_currency = models.CharField(max_length=3, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    max_redemptions = models.PositiveIntegerField(null=True, blank=True)
    stripe_promotion_code_id = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            # Customers type codes in any case; Stripe matches them case-insensitively too.
            models.UniqueConstraint(Upper("code"), name="billing_promotioncode_code_unique"),
            models.CheckConstraint(
                condition=models.Q(minimum_amount__isnull=True) | models.Q(minimum_amount__gte=0),
                name="billing_promotioncode_minimum_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return self.code

    def clean(self) -> None:
        if not self.code.isalnum():
            raise ValidationError({"code": "Letters and digits only."})
        if (self.minimum_amount is None) != (not self.minimum_amount_currency):
            raise ValidationError("A minimum amount goes with its currency.")

    def redeemable(self, at: datetime | None = None) -> bool:
        """Whether Tally offers it (Stripe still has the last word: limits, first-time rule)."""
        now = at or timezone.now()
        return (
            self.is_active
            and self.coupon.is_active
            and bool(self.stripe_promotion_code_id)
            and (self.expires_at is None or now < self.expires_at)
            and (self.coupon.redeem_by is None or now < self.coupon.redeem_by)
        )


class SubscriptionDiscount(models.Model):
    """A discount Stripe applies to an organization's subscription, as last read from Stripe."""

    organization = models.ForeignKey(
        "teams.Organization", on_delete=models.CASCADE, related_name="subscription_discounts"
    )
    stripe_discount_id = models.CharField(max_length=255, unique=True)
    stripe_subscription_id = models.CharField(max_length=255, db_index=True)
    stripe_coupon_id = models.CharField(max_length=255)
    coupon = models.ForeignKey(Coupon, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    promotion_code = models.ForeignKey(
        PromotionCode, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(null=True, blank=True, help_text="When a repeating discount ends.")
    ended_at = models.DateTimeField(null=True, blank=True, help_text="When Stripe stopped applying it.")

    class Meta:
        ordering = ["-starts_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.stripe_coupon_id} on {self.stripe_subscription_id}"

    @property
    def is_live(self) -> bool:
        return self.ended_at is None
