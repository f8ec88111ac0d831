from django.db import models
from django.utils import timezone


class StripeEventOutcome(models.Model):
    """What became of each Stripe event Tally handles: processed, or failed and due again. An
    event whose handler failed after the task's own retries is not lost: the periodic
    `stripe_events_retry` job handles it again (handlers are safe to run twice)."""

    class Status(models.TextChoices):
        PROCESSED = "processed"
        FAILED = "failed"

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="billing_event_outcome_due")]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}: {self.status}"
