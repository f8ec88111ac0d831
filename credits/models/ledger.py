import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from common.digest import Digest
from teams.models import Organization


class GrantSource(models.TextChoices):
    PURCHASE = "purchase", "Purchase"
    BONUS = "bonus", "Bonus"
    SUBSCRIPTION_ALLOWANCE = "subscription_allowance", "Subscription allowance"
    PROMOTION = "promotion", "Promotion"
    REFUND = "refund", "Refund"
    ADJUSTMENT = "adjustment", "Adjustment"

    @classmethod
    def default_priority(cls, source: str) -> int:
        # Lower is spent first: credits that expire with the period go before bought ones.
        return {
            cls.SUBSCRIPTION_ALLOWANCE: 10,
            cls.PROMOTION: 20,
            cls.BONUS: 30,
            cls.REFUND: 40,
            cls.ADJUSTMENT: 40,
            cls.PURCHASE: 50,
        }[source]


# The order credits are spent in, written once: the lowest priority first, then the soonest to
# expire (those that never expire last), then the oldest. The model's ordering, the drawable
# index and the SQL of a debit are derived from it, so the three debit paths cannot disagree.
DRAW_ORDER: tuple[tuple[str, bool], ...] = (  # (field, nulls last)
    ("priority", False),
    ("expires_at", True),
    ("created_at", False),
    ("id", False),
)


def draw_order_by() -> list:
    """The draw order for `order_by()` and `Meta.ordering` (Django names the id `pk` there)."""
    names = [("pk" if field == "id" else field, nulls_last) for field, nulls_last in DRAW_ORDER]
    return [models.F(name).asc(nulls_last=True) if nulls_last else name for name, nulls_last in names]


def draw_order_sql(alias: str) -> str:
    """The draw order as SQL over the grant table aliased `alias`."""
    return ", ".join(
        f"{alias}.{field}" + (" NULLS LAST" if nulls_last else "") for field, nulls_last in DRAW_ORDER
    )


class TransactionType(models.TextChoices):
    PURCHASE = "purchase", "Purchase"
    BONUS = "bonus", "Bonus"
    ALLOWANCE = "allowance", "Subscription allowance"
    PROMOTION = "promotion", "Promotion"
    CONSUMPTION = "consumption", "Consumption"
    REFUND = "refund", "Refund"
    EXPIRY = "expiry", "Expiry"
    CLAWBACK = "clawback", "Clawback"
    ADJUSTMENT = "adjustment", "Adjustment"

    @classmethod
    def for_source(cls, source: str) -> str:
        return {
            GrantSource.PURCHASE: cls.PURCHASE,
            GrantSource.BONUS: cls.BONUS,
            GrantSource.SUBSCRIPTION_ALLOWANCE: cls.ALLOWANCE,
            GrantSource.PROMOTION: cls.PROMOTION,
            GrantSource.REFUND: cls.REFUND,
            GrantSource.ADJUSTMENT: cls.ADJUSTMENT,
        }[source]


CREDIT_IN_TYPES = [
    TransactionType.PURCHASE,
    TransactionType.BONUS,
    TransactionType.ALLOWANCE,
    TransactionType.PROMOTION,
    TransactionType.REFUND,
]
# A clawback takes back what is left of a purchase whose payment was refunded.
CREDIT_OUT_TYPES = [TransactionType.CONSUMPTION, TransactionType.EXPIRY, TransactionType.CLAWBACK]


class CreditGrant(models.Model):
    """A bucket of credits from one source. Spending draws from buckets, so refunds and expiries
    know exactly which credits they touch.

    Invariant (checked by `credits_reconcile`): the remaining credits of an account's grants
    add up to its balance when that is positive, and to zero when it is in overdraft.
    """

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # The distribution column (see config/tenancy.py): its indexes lead with it.
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+", db_index=False)
    account = models.ForeignKey(
        "credits.CreditAccount", on_delete=models.PROTECT, related_name="grants", db_index=False
    )
    source = models.CharField(max_length=32, choices=GrantSource.choices)
    amount = models.BigIntegerField(help_text="Credits granted.")
    remaining = models.BigIntegerField()
    revoked = models.BigIntegerField(
        default=0,
        help_text="Credits whose payment was refunded or lost to a dispute: taken back as they can be.",
    )
    owed = models.BigIntegerField(
        default=0, help_text="Revoked credits still in the grant, waiting for holds to settle."
    )
    disputed = models.BigIntegerField(
        default=0, help_text="Held back while the payment that bought them is disputed."
    )
    priority = models.SmallIntegerField(help_text="Lower is spent first.")
    expires_at = models.DateTimeField(null=True, blank=True)
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = draw_order_by()
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount__gt=0), name="credits_creditgrant_amount_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(remaining__gte=0, remaining__lte=models.F("amount")),
                name="credits_creditgrant_remaining_within_amount",
            ),
            models.CheckConstraint(
                condition=models.Q(
                    revoked__gte=0,
                    revoked__lte=models.F("amount"),
                    owed__gte=0,
                    disputed__gte=0,
                    remaining__gte=models.F("owed") + models.F("disputed"),
                ),
                name="credits_creditgrant_locks_within_remaining",
            ),
        ]
        indexes = [
            # No partial conditions on `remaining`: spending rewrites it on every call, and an
            # index that mentions it would rule out PostgreSQL's cheaper in-place (HOT) updates.
            # The draw order after the account; the id, last, only breaks ties.
            models.Index(
                fields=["organization", *(field for field, _ in DRAW_ORDER[:-1])],
                name="credits_grant_org_drawable",
            ),
            models.Index(fields=["expires_at"], name="credits_grant_expiring"),
        ]

    def __str__(self) -> str:
        return f"{self.get_source_display()}: {self.remaining}/{self.amount}"

    def is_expired(self, now=None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())

    @property
    def drawable(self) -> int:
        """What ordinary spending may take from it (if it has not expired)."""
        return self.remaining - self.owed - self.disputed


class CreditTransaction(models.Model):
    """One line of the ledger. Never updated or deleted: a mistake is fixed by another line."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # The distribution column (see config/tenancy.py): its indexes lead with it.
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+", db_index=False)
    account = models.ForeignKey(
        "credits.CreditAccount", on_delete=models.PROTECT, related_name="transactions", db_index=False
    )
    type = models.CharField(max_length=16, choices=TransactionType.choices)
    amount = models.BigIntegerField(help_text="Signed: positive adds credits, negative takes them.")
    balance_after = models.BigIntegerField()
    action = models.SlugField(
        max_length=60, blank=True, db_index=False, help_text="The priced action, for consumptions."
    )
    quantity = models.BigIntegerField(null=True, blank=True)
    # Prices are never deleted, so nothing needs to find the lines of a price quickly; every
    # index here is written on each consumption.
    price = models.ForeignKey(
        "credits.CreditPrice",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    description = models.CharField(max_length=200, blank=True)
    reference_type = models.CharField(max_length=40, blank=True)
    reference_id = models.CharField(max_length=100, blank=True)
    idempotency_key = models.CharField(max_length=255)
    # Indexed only where set (see Meta): nearly every line refunds nothing.
    refund_of = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="refunds", db_index=False
    )
    # Indexed only where set (see Meta): API calls and tasks act for nobody.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # A debit that took its whole amount from one grant (nearly every consumption) names the
    # grant here instead of writing an allocation row: one row and two index entries fewer per
    # consumption. Any other line's grants are its allocations; `draws()` reads both. Nothing
    # looks lines up by grant quickly (the reconciliation reads them all), so no index.
    grant = models.ForeignKey(
        CreditGrant, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )

    # Set on the instance a service returns when the idempotency key had already been used.
    replayed = False

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            # An index of the keys' digest (common/digest.py): half the size of the keys' own.
            models.UniqueConstraint(
                Digest("organization", "idempotency_key"), name="credits_credittransaction_unique_key_digest"
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(type__in=CREDIT_IN_TYPES, amount__gt=0)
                    | models.Q(type__in=CREDIT_OUT_TYPES, amount__lt=0)
                    | (models.Q(type=TransactionType.ADJUSTMENT) & ~models.Q(amount=0))
                ),
                name="credits_credittransaction_sign_matches_type",
            ),
        ]
        # Consumptions are nearly all the rows, so each index serves only the rows its queries
        # look for. The account's own foreign-key index would duplicate these, so it has none.
        indexes = [
            # The history, newest first (with its filters), read backwards. Ascending, so that
            # each new line lands on the index's rightmost page: a descending one puts every
            # insert at the left edge of the account's range, and leaves its pages half empty.
            models.Index(fields=["organization", "id"], name="credits_txn_org_recent"),
            # Lines of one kind other than consumption (allowances in reconciliation, a history
            # filtered by type); consumption's figures come from the daily rollup.
            models.Index(
                fields=["organization", "type"],
                condition=~models.Q(type=TransactionType.CONSUMPTION),
                name="credits_txn_org_type",
            ),
            # The line of a purchase, a period's allowance or a refunded charge, by reference.
            models.Index(
                fields=["organization", "reference_type", "reference_id"],
                condition=~models.Q(reference_id=""),
                name="credits_txn_org_reference",
            ),
            # A user's deletion sets their lines' actor to null; a refund finds its original's.
            models.Index(fields=["actor"], condition=models.Q(actor__isnull=False), name="credits_txn_actor"),
            models.Index(
                fields=["refund_of"],
                condition=models.Q(refund_of__isnull=False),
                name="credits_txn_refund_of",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_type_display()} {self.amount:+}"

    @property
    def is_consumption(self) -> bool:
        return self.type == TransactionType.CONSUMPTION

    def draws(self) -> list[tuple[int, int]]:
        """(grant id, credits) for each grant this line put credits into (positive) or took
        them from (negative): the grant it names, or its allocations."""
        if self.grant_id is not None:
            return [(self.grant_id, self.amount)]
        return list(
            self.allocations.filter(organization_id=self.organization_id)
            .order_by("pk")
            .values_list("grant_id", "amount")
        )


class CreditAllocation(models.Model):
    """How much of one ledger entry went into (positive) or came out of (negative) one grant,
    for every entry but a debit that names its one grant itself (`CreditTransaction.grant`)."""

    # The distribution column: a distributed unique constraint must contain it.
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+", db_index=False)
    # Indexed by the unique constraint below.
    transaction = models.ForeignKey(
        CreditTransaction, on_delete=models.PROTECT, related_name="allocations", db_index=False
    )
    grant = models.ForeignKey(
        CreditGrant, on_delete=models.PROTECT, related_name="allocations", db_index=False
    )
    amount = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "transaction", "grant"],
                name="credits_creditallocation_unique_org_grant",
            ),
            models.CheckConstraint(
                condition=~models.Q(amount=0), name="credits_creditallocation_amount_not_zero"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.amount:+} on grant {self.grant_id}"


class CreditUsageDay(models.Model):
    """Credits consumed by one account on one UTC day for one action: the credits page's charts
    and runway, kept by the same statement that writes each consumption, so they cost a few
    dozen rows however long the ledger grows. Derived from the ledger, never a record of its
    own: the ledger line says what happened, this only adds it up."""

    # The distribution column; indexed by the unique constraint below, which leads with it.
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+", db_index=False)
    account = models.ForeignKey(
        "credits.CreditAccount", on_delete=models.CASCADE, related_name="usage_days", db_index=False
    )
    day = models.DateField()
    action = models.SlugField(max_length=60, blank=True, db_index=False)
    credits = models.BigIntegerField(default=0)
    consumptions = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "day", "action"], name="credits_creditusageday_unique_org_day"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.action or 'other'}: {self.credits}"


class ReservationStatus(models.TextChoices):
    HELD = "held", "Held"
    CONFIRMED = "confirmed", "Confirmed"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Expired"


class CreditReservation(models.Model):
    """Credits set aside before a long or uncertain operation, settled afterwards.

    Confirming consumes at most the held amount and releases the rest; cancelling or expiring
    releases it all. The hold lives on the account (`held`), not in the ledger.
    """

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # The distribution column (see config/tenancy.py): its indexes lead with it.
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+", db_index=False)
    account = models.ForeignKey(
        "credits.CreditAccount", on_delete=models.PROTECT, related_name="reservations", db_index=False
    )
    amount = models.BigIntegerField(help_text="Credits held.")
    consumed = models.BigIntegerField(null=True, blank=True)
    status = models.CharField(
        max_length=16, choices=ReservationStatus.choices, default=ReservationStatus.HELD
    )
    action = models.SlugField(max_length=60, blank=True)
    quantity = models.BigIntegerField(null=True, blank=True)
    price = models.ForeignKey(
        "credits.CreditPrice", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    description = models.CharField(max_length=200, blank=True)
    reference_type = models.CharField(max_length=40, blank=True)
    reference_id = models.CharField(max_length=100, blank=True)
    idempotency_key = models.CharField(max_length=255)
    transaction = models.OneToOneField(
        CreditTransaction, on_delete=models.PROTECT, null=True, blank=True, related_name="reservation"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    metadata = models.JSONField(default=dict, blank=True)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)
    settled_at = models.DateTimeField(null=True, blank=True)

    replayed = False

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            # An index of the keys' digest (common/digest.py): half the size of the keys' own.
            models.UniqueConstraint(
                Digest("organization", "idempotency_key"), name="credits_creditreservation_unique_key_digest"
            ),
            models.CheckConstraint(
                condition=models.Q(amount__gt=0), name="credits_creditreservation_amount_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(consumed__isnull=True)
                | models.Q(consumed__gte=0, consumed__lte=models.F("amount")),
                name="credits_creditreservation_consumed_within_amount",
            ),
        ]
        indexes = [
            models.Index(
                fields=["expires_at"], condition=models.Q(status="held"), name="credits_reservation_open"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.amount} credits {self.status}"

    @property
    def is_open(self) -> bool:
        return self.status == ReservationStatus.HELD


class DisputeStatus(models.TextChoices):
    OPEN = "open", "Open"
    WON = "won", "Won"
    LOST = "lost", "Lost"


class CreditDispute(models.Model):
    """A dispute of a payment that bought credits: they are held back while it is open, given
    back if it is won and taken back if it is lost.

    Recorded when Stripe says so, even before the purchase it concerns is completed (events come
    in any order): the grant is attached when the purchase completes.
    """

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    stripe_dispute_id = models.CharField(max_length=255, unique=True)
    payment_intent_id = models.CharField(max_length=255, db_index=True)
    # Set with the account, once the purchase the dispute concerns is known (see config/tenancy.py).
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    account = models.ForeignKey(
        "credits.CreditAccount", on_delete=models.PROTECT, null=True, blank=True, related_name="disputes"
    )
    grant = models.ForeignKey(
        CreditGrant, on_delete=models.PROTECT, null=True, blank=True, related_name="disputes"
    )
    amount = models.BigIntegerField(help_text="Disputed, in minor units.")
    currency = models.CharField(max_length=3)
    credits = models.BigIntegerField(default=0, help_text="The credits that amount bought.")
    status = models.CharField(
        max_length=8,
        choices=DisputeStatus.choices,
        default=DisputeStatus.OPEN,
        help_text="What Tally has applied to the credits.",
    )
    stripe_status = models.CharField(max_length=32, blank=True, help_text="The dispute's status at Stripe.")
    reason = models.CharField(max_length=60, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount__gte=0, credits__gte=0), name="credits_creditdispute_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"Dispute {self.stripe_dispute_id} ({self.status})"
