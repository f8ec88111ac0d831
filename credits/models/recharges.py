import uuid

from django.db import models
from django.utils import timezone


class RechargeStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


class CreditRecharge(models.Model):
    """One automatic top-up: a package charged to the saved card when the balance runs low.

    A pending row is written and committed before the card is charged, so a crash leaves a
    record; the database allows one pending recharge per account, never two in flight.
    """

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    account = models.ForeignKey("credits.CreditAccount", on_delete=models.PROTECT, related_name="recharges")
    package = models.ForeignKey("credits.CreditPackage", on_delete=models.PROTECT, related_name="+")
    credits = models.BigIntegerField(help_text="Credits the package grants, as it was when charged.")
    amount = models.BigIntegerField(help_text="Price in minor units, as it was when charged.")
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=RechargeStatus.choices, default=RechargeStatus.PENDING)
    failure_code = models.CharField(max_length=60, blank=True)
    failure_message = models.CharField(max_length=255, blank=True)
    payment_intent_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    transaction = models.OneToOneField(
        "credits.CreditTransaction", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["account"],
                condition=models.Q(status="pending"),
                name="credits_creditrecharge_one_in_flight",
            ),
        ]

    def __str__(self) -> str:
        return f"Recharge {self.credits} credits ({self.status})"
