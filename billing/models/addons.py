"""Add-ons an organization bought after subscribing, and the seats it prepaid."""

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from billing.models.catalog import Addon


class AddonPurchase(models.Model):
    """One purchase of an add-on: a one-time pack paid through Checkout, or a recurring add-on
    carried as an item of the organization's Stripe subscription.

    Written (pending) before Stripe is called; its unique `code` keys that call (`idempotency_key`),
    and the Stripe ids it learns are unique, so a replayed webhook finds the same row. Its grants
    are made once, by the one update that moves it from pending to granted.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        GRANTED = "granted", "Granted"  # paid (one-time) or on the subscription (recurring)
        ENDING = "ending", "Ends at the period's end"
        ABANDONED = "abandoned", "Abandoned"
        FAILED = "failed", "Failed"
        # A one-time add-on whose payment came back: what it granted is held while a dispute is
        # open, and ended when the charge is refunded in full or the dispute lost.
        DISPUTED = "disputed", "Held while its payment is disputed"
        REFUNDED = "refunded", "Refunded"
        CHARGED_BACK = "charged_back", "Dispute lost"

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(
        "teams.Organization", on_delete=models.CASCADE, related_name="addon_purchases"
    )
    addon = models.ForeignKey(Addon, on_delete=models.PROTECT, related_name="purchases")
    quantity = models.PositiveIntegerField()
    unit_amount = models.BigIntegerField(help_text="Minor units, as sold.")
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    stripe_checkout_session_id = models.CharField(max_length=255, null=True, blank=True)
    stripe_subscription_item_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    stripe_payment_intent_id = models.CharField(
        max_length=255, null=True, blank=True, unique=True, help_text="What paid a one-time add-on."
    )
    failure_message = models.CharField(max_length=500, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    granted_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            # One purchase per add-on of a Checkout Session: a subscription checkout may carry
            # several add-ons, a replay of its webhook finds each one's row again.
            models.UniqueConstraint(
                fields=["stripe_checkout_session_id", "addon"],
                name="billing_addonpurchase_one_per_session",
            ),
            models.CheckConstraint(
                condition=models.Q(quantity__gte=1), name="billing_addonpurchase_quantity_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(unit_amount__gte=0), name="billing_addonpurchase_amount_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.addon} ({self.status})"

    @property
    def idempotency_key(self) -> str:
        """The key of the Stripe call that sells it: unique with `code`."""
        return f"tally-addon-{self.code}"

    @property
    def amount(self) -> int:
        return self.unit_amount * self.quantity

    @property
    def is_recurring(self) -> bool:
        return self.addon.kind == Addon.Kind.RECURRING
