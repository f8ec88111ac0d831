from django.db import models
from django.utils import timezone

from teams.models import Organization


class CreditAccount(models.Model):
    """An organization's credits: a cached balance that only the ledger moves.

    `balance` is the sum of the ledger's amounts, `held` the sum of open reservations and
    `frozen` the sum of its grants' `owed` and `disputed` credits (in the balance, never spent).
    A spend is allowed while `balance - frozen - held - expired - amount >= -overdraft`,
    where `expired` is what grants past their date still hold and the overdraft only applies
    when nothing is frozen or expired; the check constraints below hold the database to the
    rules that need no other table, whatever the code does.
    """

    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="credit_account")
    balance = models.BigIntegerField(default=0)
    held = models.BigIntegerField(default=0, help_text="Reserved by open reservations.")
    frozen = models.BigIntegerField(
        default=0,
        help_text="Held back from spending: owed to a refund, or bought with a disputed payment.",
    )
    overdraft_allowance = models.PositiveIntegerField(
        default=0, help_text="How far below zero the balance may go (a small grace)."
    )
    low_balance_threshold = models.BigIntegerField(
        default=100, help_text="Alert once when the balance falls to this or below. 0 turns alerts off."
    )
    low_balance_percent = models.PositiveSmallIntegerField(
        default=0,
        help_text=(
            "When set (1-100), the threshold is this percentage of the last purchase or allowance, "
            "recomputed whenever one is granted. 0: the threshold is a fixed number of credits."
        ),
    )
    low_balance_alerted_at = models.DateTimeField(null=True, blank=True)
    auto_recharge_enabled = models.BooleanField(default=False)
    auto_recharge_threshold = models.BigIntegerField(
        default=0, help_text="Recharge when the balance falls below."
    )
    auto_recharge_package = models.ForeignKey(
        "credits.CreditPackage", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    auto_recharge_monthly_limit = models.BigIntegerField(
        default=0, help_text="Most auto-recharge may charge in a calendar month, in minor units."
    )
    lifetime_purchased = models.BigIntegerField(default=0)
    lifetime_used = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(balance__gte=-models.F("overdraft_allowance")),
                name="credits_creditaccount_balance_within_overdraft",
            ),
            models.CheckConstraint(
                condition=models.Q(held__gte=0), name="credits_creditaccount_held_not_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(held__lte=models.F("balance") + models.F("overdraft_allowance")),
                name="credits_creditaccount_held_covered",
            ),
            models.CheckConstraint(
                condition=models.Q(frozen=0) | models.Q(frozen__gt=0, frozen__lte=models.F("balance")),
                name="credits_creditaccount_frozen_within_balance",
            ),
            models.CheckConstraint(
                condition=models.Q(low_balance_threshold__gte=0),
                name="credits_creditaccount_threshold_not_negative",
            ),
            models.CheckConstraint(
                condition=models.Q(low_balance_percent__lte=100),
                name="credits_creditaccount_percent_at_most_100",
            ),
            models.CheckConstraint(
                condition=models.Q(auto_recharge_threshold__gte=0, auto_recharge_monthly_limit__gte=0),
                name="credits_creditaccount_recharge_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"Credits of {self.organization}"

    @property
    def available(self) -> int:
        """What can be spent now without going into overdraft (before expired grants, which
        only the ledger's grants know: see `services.credits_spendable`)."""
        return self.balance - self.held - self.frozen

    @property
    def spendable(self) -> int:
        return self.available + (0 if self.frozen else self.overdraft_allowance)

    @property
    def is_low(self) -> bool:
        return self.low_balance_threshold > 0 and self.balance <= self.low_balance_threshold

    def crossed_low_balance(self, *, before: int, after: int) -> bool:
        """True for the one movement that takes the balance from above the threshold to at or below."""
        return self.low_balance_threshold > 0 and before > self.low_balance_threshold >= after

    def crossed_recharge_threshold(self, *, before: int, after: int) -> bool:
        return self.auto_recharge_enabled and before >= self.auto_recharge_threshold > after
