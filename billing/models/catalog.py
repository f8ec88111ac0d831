"""The catalog: what can be bought and what each purchase entitles an organization to.

Defined as code in `config/catalog.toml`, loaded by `catalog_sync`, editable in the admin. Every
row carries a `key` that the file, Stripe metadata and lookup keys use to find it again.
"""

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from billing import pricing
from billing.pricing import validate_tiers
from common.validators import validate_bullets


class Interval(models.TextChoices):
    MONTH = "month", "Monthly"
    YEAR = "year", "Yearly"


class TaxBehavior(models.TextChoices):
    """Whether a price's amount excludes the tax (added on top) or includes it."""

    EXCLUSIVE = "exclusive", "Excluding tax (+ tax)"
    INCLUSIVE = "inclusive", "Including tax"


class Product(models.Model):
    key = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    sort_order = models.PositiveIntegerField(default=0)
    is_public = models.BooleanField(default=True, help_text="Shown on the pricing page.")
    contact_sales = models.BooleanField(default=False, help_text="Sold by talking to us.")
    highlight = models.BooleanField(default=False, help_text="Marked as the popular choice.")
    bullets = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_bullets],
        help_text='Up to six short selling points for the pricing page, e.g. ["Cancel any time"].',
    )
    stripe_product_id = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["sort_order", "key"]

    def __str__(self) -> str:
        return self.name


class Feature(models.Model):
    class Kind(models.TextChoices):
        BOOLEAN = "boolean", "On or off"
        LIMIT = "limit", "Counted resource"
        METERED = "metered", "Quantity per period"

    class Reset(models.TextChoices):
        NEVER = "never", "Never"
        MONTH = "month", "Every month"

    key = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    unit = models.CharField(max_length=32, blank=True, help_text="Singular, e.g. 'project'.")
    reset = models.CharField(max_length=16, choices=Reset.choices, default=Reset.NEVER)
    description = models.CharField(max_length=255, blank=True)
    sort_order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "key"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.kind == self.Kind.METERED and self.reset == self.Reset.NEVER:
            raise ValidationError({"reset": "A metered feature resets every period."})
        if self.kind != self.Kind.METERED and self.reset != self.Reset.NEVER:
            raise ValidationError({"reset": "Only metered features reset."})


class PlanQuerySet(models.QuerySet):
    def public(self):
        return self.filter(is_active=True, product__is_public=True)


class SeatPolicy(models.TextChoices):
    """How Stripe bills a seat added or removed in the middle of a period."""

    PRORATE = "prorate", "Prorate: charge or credit the rest of the period on the next invoice"
    INVOICE = "invoice", "Invoice now: charge or credit the rest of the period at once"
    RENEWAL = "renewal", "Add now, remove at renewal: no credit for a seat given up mid-period"


class SeatMode(models.TextChoices):
    """Who sets a per-seat plan's quantity."""

    AUTOMATIC = "automatic", "Automatic: one seat per member"
    PREPAID = "prepaid", "Prepaid: the owner buys a number of seats; invitations stop there"


class Plan(models.Model):
    key = models.SlugField(max_length=64, unique=True)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="plans")
    name = models.CharField(max_length=100)
    interval = models.CharField(max_length=8, choices=Interval.choices, default=Interval.MONTH)
    currency = models.CharField(max_length=3, default="usd")
    trial_days = models.PositiveIntegerField(default=0)
    is_free = models.BooleanField(
        default=False, help_text="The plan of every organization without a paid subscription."
    )
    is_active = models.BooleanField(default=True)
    sort_order = models.PositiveIntegerField(default=0)
    seat_policy = models.CharField(max_length=16, choices=SeatPolicy.choices, default=SeatPolicy.PRORATE)
    seat_minimum = models.PositiveIntegerField(
        default=1, help_text="The fewest seats billed, however small the team."
    )
    seat_mode = models.CharField(max_length=16, choices=SeatMode.choices, default=SeatMode.AUTOMATIC)
    credit_allowance = models.PositiveIntegerField(
        default=0, help_text="Credits granted at the start of each billing period, expiring at its end."
    )
    tax_behavior = models.CharField(max_length=16, choices=TaxBehavior.choices, default=TaxBehavior.EXCLUSIVE)

    objects = PlanQuerySet.as_manager()

    class Meta:
        ordering = ["sort_order", "key"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_free"], condition=models.Q(is_free=True), name="billing_plan_one_free"
            ),
            # Stripe refuses a quantity of 0 on a licensed price: at least one seat is billed.
            models.CheckConstraint(
                condition=models.Q(seat_minimum__gte=1), name="billing_plan_seat_minimum_positive"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_contact_sales(self) -> bool:
        return self.product.contact_sales

    def total(self, *, seats: int = 1, currency: str | None = None) -> int:
        """The recurring amount per interval for `seats`, before metered usage."""
        return sum(item.amount(seats=seats, currency=currency) for item in self.line_items.all())

    @property
    def currencies(self) -> list[str]:
        """The currencies it can be bought in: its own, and those every line item is priced in."""
        items = [i for i in self.line_items.all() if i.kind != PlanLineItem.Kind.METERED]
        others = set.intersection(*(set(i.currency_options or {}) for i in items)) if items else set()
        return [self.currency, *sorted(others - {self.currency})]

    def total_in(self, currency: str) -> int:
        return self.total(currency=currency)

    @property
    def seats_prepaid(self) -> bool:
        return self.seat_mode == SeatMode.PREPAID and self.seat_item() is not None

    def seat_item(self) -> "PlanLineItem | None":
        return next((i for i in self.line_items.all() if i.kind == PlanLineItem.Kind.PER_SEAT), None)


class PlanLineItem(models.Model):
    """One price on a plan's invoice: a flat fee, a per-seat price or a metered price."""

    class Kind(models.TextChoices):
        FLAT = "flat", "Flat"
        PER_SEAT = "per_seat", "Per seat"
        METERED = "metered", "Metered"

    class TiersMode(models.TextChoices):
        GRADUATED = "graduated", "Graduated"
        VOLUME = "volume", "Volume"

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="line_items")
    key = models.SlugField(max_length=64)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    unit_amount = models.BigIntegerField(null=True, blank=True, help_text="Minor units (cents).")
    tiers_mode = models.CharField(max_length=16, choices=TiersMode.choices, blank=True)
    tiers = models.JSONField(
        default=list, blank=True, help_text='[{"up_to": 3, "unit_amount": 0, "flat_amount": 0}, …]'
    )
    feature = models.ForeignKey(
        Feature,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="For metered items: the feature whose usage this bills.",
    )
    currency_options = models.JSONField(
        default=dict,
        blank=True,
        help_text='Other currencies: {"eur": {"unit_amount": 4500}} or {"eur": {"tiers": [...]}}.',
    )
    stripe_price_id = models.CharField(max_length=255, blank=True)
    on_price_change = models.CharField(
        max_length=16,
        choices=[
            ("keep", "Existing subscribers keep their price (grandfathered)"),
            ("migrate", "Existing subscribers move to the new price at their next renewal"),
        ],
        default="keep",
        help_text="When the amount changes: what happens to those already subscribed.",
    )

    class Meta:
        ordering = ["plan", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["plan", "key"], name="billing_planlineitem_unique_key"),
            models.CheckConstraint(
                condition=models.Q(unit_amount__isnull=True) | models.Q(unit_amount__gte=0),
                name="billing_planlineitem_amount_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.plan.key}:{self.key}"

    @property
    def lookup_key(self) -> str:
        return f"tally:{self.plan.key}:{self.key}"

    def clean(self) -> None:
        errors = validate_tiers(
            unit_amount=self.unit_amount, tiers=self.tiers, tiers_mode=self.tiers_mode or None
        )
        if self.kind == self.Kind.METERED and self.feature_id is None:
            errors.append("a metered item names the feature it bills")
        if errors:
            raise ValidationError("; ".join(errors))

    def breakdown(self, quantity: int, currency: str | None = None) -> pricing.Breakdown:
        unit_amount, tiers = self.unit_amount, self.tiers
        if currency and currency != self.plan.currency:
            option = (self.currency_options or {}).get(currency) or {}
            unit_amount, tiers = option.get("unit_amount"), option.get("tiers") or []
        return pricing.price(
            quantity=quantity,
            unit_amount=unit_amount,
            tiers=tiers,
            tiers_mode=self.tiers_mode or None,
        )

    def amount(self, *, seats: int = 1, currency: str | None = None) -> int:
        if self.kind == self.Kind.FLAT:
            return self.breakdown(1, currency).total
        if self.kind == self.Kind.PER_SEAT:
            return self.breakdown(seats, currency).total
        return 0  # metered items are billed on usage


class Addon(models.Model):
    class Kind(models.TextChoices):
        ONE_TIME = "one_time", "One-time"
        RECURRING = "recurring", "Recurring"

    key = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=255, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    unit_amount = models.BigIntegerField()
    currency = models.CharField(max_length=3, default="usd")
    currency_options = models.JSONField(
        default=dict,
        blank=True,
        help_text='Other currencies, as plans have them: {"eur": {"unit_amount": 900}}.',
    )
    interval = models.CharField(max_length=8, choices=Interval.choices, blank=True)
    max_quantity = models.PositiveIntegerField(default=1)
    tax_behavior = models.CharField(max_length=16, choices=TaxBehavior.choices, default=TaxBehavior.EXCLUSIVE)
    is_active = models.BooleanField(default=True)
    sort_order = models.PositiveIntegerField(default=0)
    stripe_product_id = models.CharField(max_length=255, blank=True)
    stripe_price_id = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["sort_order", "key"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(unit_amount__gte=0), name="billing_addon_amount_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def lookup_key(self) -> str:
        return f"tally:addon:{self.key}"

    @property
    def currencies(self) -> list[str]:
        """The currencies it is sold in: its own, then its `currency_options`."""
        return [self.currency, *sorted(set(self.currency_options or {}) - {self.currency})]

    def unit_amount_in(self, currency: str) -> int | None:
        """Its price in `currency`, or None where it is not sold in that currency."""
        if currency == self.currency:
            return self.unit_amount
        option = (self.currency_options or {}).get(currency)
        return option.get("unit_amount") if isinstance(option, dict) else None

    def clean(self) -> None:
        for currency, option in (self.currency_options or {}).items():
            amount = option.get("unit_amount") if isinstance(option, dict) else None
            if currency == self.currency or not (len(currency) == 3 and currency.islower()):
                raise ValidationError({"currency_options": f"{currency!r}: another currency, such as 'eur'."})
            if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
                raise ValidationError({"currency_options": f"{currency}: a unit_amount in cents, 0 or more."})
        if self.kind == self.Kind.RECURRING and not self.interval:
            raise ValidationError({"interval": "A recurring add-on needs an interval."})
        if self.kind == self.Kind.ONE_TIME and self.interval:
            raise ValidationError({"interval": "A one-time add-on has no interval."})


class AddonEntitlement(models.Model):
    """What one unit of an add-on adds: `amount` more of a feature, or unlimited."""

    addon = models.ForeignKey(Addon, on_delete=models.CASCADE, related_name="entitlements")
    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="+")
    amount = models.BigIntegerField(default=0)
    unlimited = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["addon", "feature"], name="billing_addonentitlement_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.addon.key} → {self.feature.key}"


class Overage(models.TextChoices):
    BLOCK = "block", "Block at the limit"
    CREDITS = "credits", "Spend credits past the limit"
    BILL = "bill", "Bill past the limit"


class PlanEntitlement(models.Model):
    """What a plan gives for one feature. Every plan has a row for every feature."""

    UNLIMITED = -1

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="entitlements")
    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="plan_entitlements")
    enabled = models.BooleanField(default=False)
    limit = models.BigIntegerField(default=0, help_text="-1 for unlimited; ignored for on/off.")
    overage = models.CharField(max_length=16, choices=Overage.choices, default=Overage.BLOCK)
    warn_at = models.JSONField(default=list, blank=True, help_text="Percentages, e.g. [80, 100].")

    class Meta:
        ordering = ["plan", "feature__sort_order"]
        constraints = [
            models.UniqueConstraint(fields=["plan", "feature"], name="billing_planentitlement_unique"),
            models.CheckConstraint(
                condition=models.Q(limit__gte=-1), name="billing_planentitlement_limit_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.plan.key} · {self.feature.key}"

    @property
    def unlimited(self) -> bool:
        return self.enabled and self.limit == self.UNLIMITED


class EntitlementGrant(models.Model):
    """Access given outside a plan: a comp, a grandfathered cohort, or an add-on bought.

    One grant may cover a group of organizations (e.g. every early customer keeps unlimited
    projects), independently of their subscriptions.
    """

    class Source(models.TextChoices):
        COMP = "comp", "Complimentary"
        GRANDFATHERED = "grandfathered", "Grandfathered"
        ADDON = "addon", "Add-on"

    organizations = models.ManyToManyField("teams.Organization", related_name="entitlement_grants")
    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="grants")
    source = models.CharField(max_length=16, choices=Source.choices)
    amount = models.BigIntegerField(default=0, help_text="Added to the plan's limit.")
    unlimited = models.BooleanField(default=False, help_text="Replaces the limit with unlimited.")
    reason = models.CharField(max_length=255, blank=True)
    starts_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    reference = models.CharField(
        max_length=255, blank=True, help_text="e.g. the Stripe subscription item of an add-on."
    )
    purchase = models.ForeignKey(
        "billing.AddonPurchase",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="grants",
        help_text="The add-on purchase that granted it.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # A purchase grants each feature once, however often its webhook is delivered.
            models.UniqueConstraint(
                fields=["purchase", "feature"], name="billing_entitlementgrant_once_per_purchase"
            ),
            models.CheckConstraint(
                condition=models.Q(amount__gte=0), name="billing_entitlementgrant_amount_not_negative"
            ),
        ]

    def __str__(self) -> str:
        what = "unlimited" if self.unlimited else f"+{self.amount}"
        return f"{self.get_source_display()}: {what} {self.feature.key}"

    def is_active_at(self, when) -> bool:
        return self.starts_at <= when and (self.expires_at is None or when < self.expires_at)
