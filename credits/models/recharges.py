import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from teams.models import Organization


class RechargeStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


class CreditRecharge(models.Model):
    """One automatic top-up: a package charged to the saved card when the balance runs low.

    A pending row is written and committed before the card is charged, so a crash leaves a
    record; the database allows one pending recharge per organization, never two in flight.
    """

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # The distribution column (see config/tenancy.py); its index finds an account's rows, so the
    # account's own foreign key needs none.
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    account = models.ForeignKey(
        "credits.CreditAccount", on_delete=models.PROTECT, related_name="recharges", db_index=False
    )
    package = models.ForeignKey("credits.CreditPackage", on_delete=models.PROTECT, related_name="+")
    credits = models.BigIntegerField(help_text="Credits the package grants, as it was when charged.")
    amount = models.BigIntegerField(help_text="Price in minor units, as it was when charged.")
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=RechargeStatus.choices, default=RechargeStatus.PENDING)
    failure_code = models.CharField(max_length=60, blank=True)
    failure_message = models.CharField(max_length=255, blank=True)
    payment_intent_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    amount_refunded = models.BigIntegerField(default=0)
    transaction = models.OneToOneField(
        "credits.CreditTransaction", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization"],
                condition=models.Q(status="pending"),
                name="credits_creditrecharge_org_one_in_flight",
            ),
        ]

    def __str__(self) -> str:
        return f"Recharge {self.credits} credits ({self.status})"

    @property
    def awaits_authentication(self) -> bool:
        """Refused off session because the bank wants the cardholder present: they can still
        confirm this payment (and get its credits) on the recharge's page."""
        return (
            self.status == RechargeStatus.FAILED
            and self.failure_code == "authentication_required"
            and bool(self.payment_intent_id)
            and self.transaction_id is None
        )


class PurchaseStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    COMPLETED = "completed", "Completed"
    ABANDONED = "abandoned", "Abandoned (checkout expired)"
    FAILED = "failed", "Payment failed"


class CreditPurchase(models.Model):
    """A package bought through Stripe Checkout, with the package as it was when the checkout
    started: a later price or bonus change never alters what this purchase grants.

    The row is committed (pending) before Stripe is called, so every session Tally opens has a
    record; `checkout.session.completed` completes it and grants the credits once, keyed by the
    session id (a bank debit completes the session unpaid: the purchase stays pending, marked
    `processing`, until `checkout.session.async_payment_succeeded`). An expired session marks it
    abandoned, a refused delayed payment failed (with the bank's reason); neither grants
    anything. A refund finds it again by its PaymentIntent.
    """

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # The distribution column (see config/tenancy.py); its index finds an account's rows, so the
    # account's own foreign key needs none.
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")
    account = models.ForeignKey(
        "credits.CreditAccount", on_delete=models.PROTECT, related_name="purchases", db_index=False
    )
    package = models.ForeignKey("credits.CreditPackage", on_delete=models.PROTECT, related_name="+")
    credits = models.BigIntegerField(help_text="The package's credits at purchase.")
    bonus_credits = models.BigIntegerField(default=0, help_text="The package's bonus at purchase.")
    amount = models.BigIntegerField(help_text="Price in minor units at purchase.")
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=PurchaseStatus.choices, default=PurchaseStatus.PENDING)
    checkout_session_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    payment_intent_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    amount_refunded = models.BigIntegerField(default=0)
    processing = models.BooleanField(
        default=False, help_text="Paid with a delayed method (a bank debit) that has not settled yet."
    )
    failure_message = models.CharField(max_length=500, blank=True)
    transaction = models.OneToOneField(
        "credits.CreditTransaction", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True, help_text="When it was abandoned or failed.")

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(credits__gt=0, bonus_credits__gte=0, amount__gte=0),
                name="credits_creditpurchase_snapshot_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(amount_refunded__gte=0, amount_refunded__lte=models.F("amount")),
                name="credits_creditpurchase_refund_within_amount",
            ),
        ]

    def __str__(self) -> str:
        return f"Purchase of {self.total_credits} credits ({self.status})"

    @property
    def total_credits(self) -> int:
        return self.credits + self.bonus_credits
