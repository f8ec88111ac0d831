from django.conf import settings
from django.db import models
from django.utils import timezone


class NoticeKind(models.TextChoices):
    """Every email billing sends. The critical ones cannot be turned off in the settings."""

    WELCOME = "welcome", "Welcome after subscribing"
    TRIAL_ENDING = "trial_ending", "Trial ending soon"
    RECEIPT = "receipt", "Receipt for each payment"
    PAYMENT_FAILED = "payment_failed", "Payment failed"
    PAYMENT_ACTION_REQUIRED = "payment_action_required", "Payment needs authentication"
    SUBSCRIPTION_CANCELED = "subscription_canceled", "Subscription canceled or scheduled to cancel"
    PLAN_CHANGED = "plan_changed", "Plan changed"
    REFUND = "refund", "Refunds"
    DISPUTE = "dispute", "Disputed payments"
    DUPLICATE_REFUNDED = "duplicate_refunded", "A second subscription refunded"
    USAGE_ALERT = "usage_alert", "Quota at 80% and 100%"
    LOW_CREDITS = "low_credits", "Low credits"
    RECHARGE_FAILED = "recharge_failed", "Auto-recharge declined or needs authentication"
    RECHARGE_SUCCEEDED = "recharge_succeeded", "Auto-recharge done"
    PRICE_CHANGE = "price_change", "New price from the next renewal"
    ASYNC_PAYMENT_FAILED = "async_payment_failed", "Delayed payment (bank debit) failed"
    SEAT_COUNT_CHANGED = "seat_count_changed", "Seat count changed"

    @classmethod
    def critical(cls) -> frozenset[str]:
        """What every billing contact receives whatever their settings: money is at stake and
        only the customer can act."""
        return frozenset(
            {
                cls.PAYMENT_FAILED,
                cls.PAYMENT_ACTION_REQUIRED,
                cls.DISPUTE,
                cls.RECHARGE_FAILED,
                cls.ASYNC_PAYMENT_FAILED,
            }
        )

    @classmethod
    def optional(cls) -> list["NoticeKind"]:
        return [kind for kind in cls if kind not in cls.critical()]


class Notice(models.Model):
    """One email about one fact (an invoice's failed attempt, a trial about to end): the unique
    `key` names the fact, so however often Stripe tells of it (duplicate deliveries, replays, a
    reconcile) it is sent once. Written in the transaction that learnt the fact, sent after it."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        SKIPPED = "skipped", "Skipped"

    organization = models.ForeignKey("teams.Organization", on_delete=models.CASCADE, related_name="notices")
    kind = models.CharField(max_length=32, choices=NoticeKind.choices)
    key = models.CharField(max_length=255, unique=True)
    data = models.JSONField(default=dict, blank=True, help_text="What the email is about (ids).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    recipients = models.JSONField(default=list, blank=True)
    subject = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["organization", "kind"], name="billing_notice_org_kind")]

    def __str__(self) -> str:
        return f"{self.kind} ({self.key})"


class NoticePreference(models.Model):
    """The notices one billing contact of one organization turned off (never a critical one)."""

    organization = models.ForeignKey(
        "teams.Organization", on_delete=models.CASCADE, related_name="notice_preferences"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    muted = models.JSONField(default=list, blank=True, help_text="Kinds of notice not wanted.")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "user"], name="billing_noticepreference_one_per_user"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.organization_id}: {', '.join(self.muted) or 'everything'}"
