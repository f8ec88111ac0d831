"""Billing state per organization: its subscription and what it has used."""

from datetime import UTC, datetime

from django.conf import settings
from django.db import models
from django.utils import timezone

from billing.models.catalog import Feature, Plan


class SubscriptionStatus(models.TextChoices):
    # Stripe's names, so that webhook payloads map one to one.
    TRIALING = "trialing", "Trialing"
    ACTIVE = "active", "Active"
    PAST_DUE = "past_due", "Past due"
    UNPAID = "unpaid", "Unpaid"
    CANCELED = "canceled", "Canceled"
    INCOMPLETE = "incomplete", "Incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired", "Incomplete, expired"
    PAUSED = "paused", "Paused"


# Statuses whose plan still applies; the others fall back to the Free plan.
PLAN_STATUSES = (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)
# A subscription that ended at once, or that no longer pays for its period: its plan's credit
# allowance goes with it (a subscription canceled at period end reaches `canceled` at that end).
ENDED_STATUSES = (
    SubscriptionStatus.CANCELED,
    SubscriptionStatus.UNPAID,
    SubscriptionStatus.INCOMPLETE_EXPIRED,
)


class Access(models.TextChoices):
    FULL = "full", "Full access"
    RESTRICTED = "restricted", "Restricted: data visible, nothing new"
    FREE = "free", "Free plan"


class OrgSubscription(models.Model):
    """What an organization pays for, as Tally reads it. Webhooks keep it in step with Stripe."""

    organization = models.OneToOneField(
        "teams.Organization", on_delete=models.CASCADE, related_name="subscription"
    )
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(max_length=24, choices=SubscriptionStatus.choices)
    seats = models.PositiveIntegerField(default=1)
    billing_cycle_anchor = models.DateTimeField(default=timezone.now)
    current_period_start = models.DateTimeField(default=timezone.now)
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    trial_end = models.DateTimeField(null=True, blank=True)
    grace_until = models.DateTimeField(
        null=True, blank=True, help_text="After a failed payment: full access until then."
    )
    pending_plan = models.ForeignKey(
        Plan,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="A downgrade that takes effect when the current period ends.",
    )
    pending_plan_at = models.DateTimeField(null=True, blank=True)
    first_paid_at = models.DateTimeField(null=True, blank=True)
    dispute_grace_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="After a disputed payment: full access until then, restricted after until the "
        "dispute is won or a later payment goes through.",
    )
    stripe_subscription_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    price_ids = models.JSONField(
        default=list, blank=True, help_text="The Stripe prices of its items (which plan version it is on)."
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"{self.organization} on {self.plan} ({self.status})"

    @property
    def applies(self) -> bool:
        return self.status in PLAN_STATUSES

    def access_at(self, moment) -> str:
        if self.status in PLAN_STATUSES and self.dispute_grace_until and moment >= self.dispute_grace_until:
            return Access.RESTRICTED  # a disputed payment is an unpaid one
        if self.status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING):
            return Access.FULL
        if self.status == SubscriptionStatus.PAST_DUE:
            in_grace = self.grace_until is None or moment < self.grace_until
            return Access.FULL if in_grace else Access.RESTRICTED
        return Access.FREE

    @property
    def access(self) -> str:
        return self.access_at(timezone.now())


class TrialRecord(models.Model):
    """The one trial an organization, and its Stripe customer, ever gets: written when the
    trial starts, and kept when the subscription ends, so that checking out again brings none."""

    organization = models.OneToOneField(
        "teams.Organization", on_delete=models.CASCADE, related_name="trial_record"
    )
    stripe_customer_id = models.CharField(max_length=255, unique=True)
    stripe_subscription_id = models.CharField(max_length=255, unique=True)
    started_at = models.DateTimeField(default=timezone.now)
    trial_end = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.organization} trial {self.stripe_subscription_id}"


class SubscriptionDuplicate(models.Model):
    """A second live Stripe subscription of an organization that already had one: canceled at
    once and its payments refunded (a payment the cardholder disputed is not refunded: the
    dispute returns it, and Stripe refuses the refund). The unique id makes every replay finish
    the same job, and `resolved_at` lets only one of them audit it and tell the owner."""

    organization = models.ForeignKey(
        "teams.Organization", on_delete=models.CASCADE, related_name="subscription_duplicates"
    )
    stripe_subscription_id = models.CharField(max_length=255, unique=True)
    kept_subscription_id = models.CharField(max_length=255)
    amount_refunded = models.BigIntegerField(default=0)
    amount_disputed = models.BigIntegerField(
        default=0, help_text="Paid, then disputed by the cardholder: the dispute returns it, not a refund."
    )
    currency = models.CharField(max_length=3, default="usd")
    detected_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-detected_at"]

    def __str__(self) -> str:
        return f"{self.organization}: duplicate {self.stripe_subscription_id}"


class Payment(models.Model):
    """A paid (or failed, or refunded) invoice: the organization's payment history."""

    class Status(models.TextChoices):
        PAID = "paid", "Paid"
        FAILED = "failed", "Failed"
        REFUNDED = "refunded", "Refunded"
        PARTIALLY_REFUNDED = "partially_refunded", "Partly refunded"

    organization = models.ForeignKey("teams.Organization", on_delete=models.CASCADE, related_name="payments")
    stripe_invoice_id = models.CharField(max_length=255, unique=True)
    stripe_charge_id = models.CharField(max_length=255, blank=True, db_index=True)
    stripe_subscription_id = models.CharField(
        max_length=255, blank=True, db_index=True, help_text="The subscription the invoice bills, if any."
    )
    number = models.CharField(max_length=64, blank=True)
    description = models.CharField(max_length=255, blank=True)
    billing_reason = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=24, choices=Status.choices)
    amount_due = models.BigIntegerField(default=0)
    amount_paid = models.BigIntegerField(default=0)
    amount_refunded = models.BigIntegerField(default=0)
    amount_discount = models.BigIntegerField(default=0, help_text="What the invoice's discounts took off.")
    amount_tax = models.BigIntegerField(default=0, help_text="The invoice's tax (included or added).")
    currency = models.CharField(max_length=3, default="usd")
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    hosted_invoice_url = models.URLField(max_length=500, blank=True)
    invoice_pdf = models.URLField(max_length=500, blank=True)
    total = models.BigIntegerField(default=0)
    lines = models.JSONField(
        default=list,
        blank=True,
        help_text="The invoice's lines as Stripe has them: description, quantity, amount, period.",
    )
    needs_authentication = models.BooleanField(
        default=False,
        help_text="Open, waiting for the cardholder to authenticate the payment (3D Secure) on "
        "the hosted invoice page.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount_refunded__gte=0)
                & models.Q(amount_refunded__lte=models.F("amount_paid")),
                name="billing_payment_refund_within_paid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.number or self.stripe_invoice_id} {self.status}"

    REASONS = {
        "subscription_create": "First payment",
        "subscription_cycle": "Renewal",
        "subscription_update": "Plan change",
        "manual": "One-off",
    }

    @property
    def refundable(self) -> int:
        return self.amount_paid - self.amount_refunded

    @property
    def line_items(self) -> list[dict]:
        """The stored lines with their periods as datetimes, for display."""
        return [
            {
                **line,
                "period_start": _from_ts(line.get("period_start")),
                "period_end": _from_ts(line.get("period_end")),
            }
            for line in self.lines
        ]

    @property
    def reason_label(self) -> str:
        return self.REASONS.get(self.billing_reason, self.billing_reason.replace("_", " "))


class DisputeState(models.TextChoices):
    OPEN = "open", "Open"
    WON = "won", "Won"
    LOST = "lost", "Lost"

    @classmethod
    def of(cls, stripe_status: str) -> str:
        # warning_closed: an inquiry that closed without a chargeback, as good as won.
        if stripe_status in ("won", "warning_closed"):
            return cls.WON
        return cls.LOST if stripe_status == "lost" else cls.OPEN


class PaymentDispute(models.Model):
    """A payment of the organization's that the cardholder disputed (a subscription invoice or a
    credit purchase): staff and the owner are told, a disputed subscription payment restricts
    access like an unpaid one."""

    organization = models.ForeignKey("teams.Organization", on_delete=models.CASCADE, related_name="disputes")
    payment = models.ForeignKey(
        Payment, on_delete=models.SET_NULL, null=True, blank=True, related_name="disputes"
    )
    stripe_dispute_id = models.CharField(max_length=255, unique=True)
    stripe_charge_id = models.CharField(max_length=255)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=60, blank=True)
    status = models.CharField(max_length=8, choices=DisputeState.choices, default=DisputeState.OPEN)
    notified_status = models.CharField(max_length=8, blank=True, help_text="The last state emailed about.")
    opened_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-pk"]

    def __str__(self) -> str:
        return f"Dispute {self.stripe_dispute_id} ({self.status})"


class CheckoutOutcome(models.TextChoices):
    """Where a Checkout Session ended, as Tally records it (for plans here, for credit packages
    in credits): open, paid by a delayed method and waiting for the bank, paid, expired unpaid,
    or its delayed payment failed."""

    OPEN = "open", "Open"
    PROCESSING = "processing", "Payment processing"
    COMPLETED = "completed", "Completed"
    ABANDONED = "abandoned", "Abandoned (expired)"
    FAILED = "failed", "Payment failed"


class PlanCheckout(models.Model):
    """A subscription checkout Tally opened, and how it ended.

    Written once Stripe has created the session; the webhooks move it on (conditionally, so a
    replay or a late, out-of-order event changes nothing): completed when the subscription is
    paid, abandoned when the session expires, failed when a delayed payment is refused. The
    success page and the billing page read it to tell the person why nothing happened.
    """

    organization = models.ForeignKey(
        "teams.Organization", on_delete=models.CASCADE, related_name="plan_checkouts"
    )
    plan = models.ForeignKey("billing.Plan", on_delete=models.PROTECT, related_name="+")
    stripe_session_id = models.CharField(max_length=255, unique=True)
    status = models.CharField(max_length=16, choices=CheckoutOutcome.choices, default=CheckoutOutcome.OPEN)
    failure_message = models.CharField(max_length=500, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"Checkout of {self.plan} ({self.status})"

    @property
    def unfinished(self) -> bool:
        return self.status in (CheckoutOutcome.ABANDONED, CheckoutOutcome.FAILED)


class UsageCounter(models.Model):
    """How much of a metered feature an organization used in one period.

    Changed only by a conditional UPDATE (see `entitlements.consume`), never read-modify-write.
    """

    organization = models.ForeignKey(
        "teams.Organization", on_delete=models.CASCADE, related_name="usage_counters"
    )
    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="+")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    used = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "feature", "period_start"], name="billing_usagecounter_one_per_period"
            ),
            models.CheckConstraint(
                condition=models.Q(used__gte=0), name="billing_usagecounter_used_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization} {self.feature.key} {self.period_start:%Y-%m-%d}: {self.used}"


class UsageAlert(models.Model):
    """A usage warning sent once per organization, feature, period and threshold."""

    organization = models.ForeignKey(
        "teams.Organization", on_delete=models.CASCADE, related_name="usage_alerts"
    )
    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, related_name="+")
    period_start = models.DateTimeField()
    threshold = models.PositiveSmallIntegerField(help_text="Percent of the limit.")
    used = models.BigIntegerField()
    limit = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "feature", "period_start", "threshold"],
                name="billing_usagealert_once_per_crossing",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organization} {self.feature.key} {self.threshold}%"


def _from_ts(value: int | None):
    return datetime.fromtimestamp(value, tz=UTC) if value else None


class SeatSyncDue(models.Model):
    """Membership changes whose seat count Stripe may not have yet.

    Written when a change schedules its sync, deleted by the sync that read the count after the
    last of them. A task lost on the way (a worker killed while it waited) leaves the row, and the
    periodic sweep queues the sync again, so the quantity in Stripe converges in minutes instead of
    waiting for the broker's visibility timeout.
    """

    organization = models.OneToOneField(
        "teams.Organization", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    since = models.DateTimeField(help_text="The first change not synced yet, or the sweep's last try.")
    last = models.DateTimeField(help_text="The latest change.")

    def __str__(self) -> str:
        return f"seat sync due for organization {self.organization_id} since {self.since:%Y-%m-%d %H:%M:%S}"
