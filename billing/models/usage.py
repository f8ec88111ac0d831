"""Metered usage: meters (catalog data), the events organizations send, and the outbox of
aggregated usage reported to Stripe's billing meters."""

from django.db import models
from django.utils import timezone

from billing.models.catalog import Feature
from common.digest import Digest, matching


class Aggregation(models.TextChoices):
    SUM = "sum", "Sum of values"
    COUNT = "count", "Number of events"
    MAX = "max", "Highest value"
    UNIQUE_COUNT = "unique_count", "Distinct values of a property"
    LAST = "last", "Latest value"


class Meter(models.Model):
    """What an event measures and how a period's events add up.

    Defined in `config/catalog.toml` beside the features. A meter that names a metered feature
    feeds that feature's quota counter, and through it the plan's metered price in Stripe. A
    gauge (a `last` meter) may instead name a `limit` feature: the limit's usage is then the
    meter's latest value times `scale` (a storage quota in bytes fed by a meter in GB).
    """

    key = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=100)
    aggregation = models.CharField(max_length=16, choices=Aggregation.choices)
    property = models.CharField(
        max_length=64, blank=True, help_text="For unique counts: the property whose values are counted."
    )
    feature = models.OneToOneField(
        Feature, on_delete=models.PROTECT, null=True, blank=True, related_name="meter"
    )
    scale = models.PositiveBigIntegerField(
        default=1,
        help_text="Units of the fed limit per unit the meter measures (1,000,000,000 bytes per GB).",
    )
    is_active = models.BooleanField(default=True)
    sort_order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "key"]

    def __str__(self) -> str:
        return self.name


class UsageEventQuerySet(models.QuerySet):
    def with_id(self, organization_id: int, source: str, event_id: str) -> "UsageEventQuerySet":
        """The organization's event of `source` with this id, found by the unique index."""
        return matching(self, organization_id=organization_id, source=source, event_id=event_id)


class UsageEvent(models.Model):
    """The one log of usage: each event stored once per (organization, source, id).

    `source` says where it came from. `ingest`: an event the organization sent to a meter (the
    batch API, the product's API calls), with its meter. `consume`: units of a metered feature
    consumed through `entitlements.consume` (or given back by `release`, a negative value), with
    its feature; a feature's meter, when it has one, shows them beside its own events. Each
    source keeps its own idempotency ids, so a client's event id never collides with a consume key.

    `period_start` is the usage period the event's own timestamp falls in, so a late event is
    counted where it belongs. `dimension` holds the unique-count property's value, indexed.
    Reporting to Stripe reads the counters these events moved (`MeterReport`), not the events.
    """

    class Source(models.TextChoices):
        INGEST = "ingest", "Sent to a meter"
        CONSUME = "consume", "Consumed (or released) through the entitlements"

    # No index of their own: every index below starts with the organization, and nothing reads
    # events by meter or feature across organizations (deleting a meter or a feature, which
    # staff do not do to one with events, may scan).
    organization = models.ForeignKey(
        "teams.Organization", on_delete=models.CASCADE, related_name="usage_events", db_index=False
    )
    source = models.CharField(max_length=16, choices=Source.choices)
    meter = models.ForeignKey(
        Meter, on_delete=models.PROTECT, null=True, blank=True, related_name="events", db_index=False
    )
    feature = models.ForeignKey(
        Feature, on_delete=models.CASCADE, null=True, blank=True, related_name="+", db_index=False
    )
    event_id = models.CharField(max_length=255, help_text="The idempotency id, unique per source.")
    value = models.BigIntegerField()
    timestamp = models.DateTimeField()
    period_start = models.DateTimeField()
    properties = models.JSONField(default=dict, blank=True)
    dimension = models.CharField(max_length=255, blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    objects = UsageEventQuerySet.as_manager()

    class Meta:
        ordering = ["-timestamp", "-pk"]
        constraints = [
            # An index of the ids' digest (common/digest.py): a third the size of the ids' own.
            models.UniqueConstraint(
                Digest("organization", "source", "event_id"), name="billing_usageevent_unique_digest"
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(source="ingest", meter__isnull=False, feature__isnull=True)
                    | models.Q(source="consume", meter__isnull=True, feature__isnull=False)
                ),
                name="billing_usageevent_meter_or_feature",
            ),
        ]
        # Totals and charts read `UsageDay`, not these rows. The unique digest serves ingestion's
        # duplicates and a consume's replay; the time index the events list and the export; the
        # value index the unique-count meters' "recorded before in this period?".
        indexes = [
            models.Index(fields=["organization", "timestamp"], name="billing_usageevent_org_time"),
            models.Index(
                fields=["organization", "meter", "period_start", "dimension"],
                condition=~models.Q(dimension=""),
                name="billing_usageevent_values",
            ),
        ]

    def __str__(self) -> str:
        what = self.meter.key if self.meter_id else self.feature.key
        return f"{what} {self.value:+d} ({self.event_id})"


class UsageDay(models.Model):
    """One day of one meter's events (or of one feature's units consumed through the
    entitlements), kept in step by the statements that store the events.

    The usage page's charts and a meter's period total read these rows, so they cost the same
    with ten events in a period and with ten million. `day` is the UTC date of the events' own
    timestamps, within the period they count in (a period may start mid-day, so a date can
    have a row in each of two periods). `distinct_new` counts the values of a unique-count
    meter's property first recorded in the period by an event of that day: summed over the
    days, the period's distinct count.
    """

    organization = models.ForeignKey(
        "teams.Organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    meter = models.ForeignKey(Meter, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    feature = models.ForeignKey(Feature, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    period_start = models.DateTimeField()
    day = models.DateField()
    total = models.BigIntegerField(default=0, help_text="The sum of the events' values.")
    events = models.BigIntegerField(default=0)
    peak = models.BigIntegerField(null=True, blank=True, help_text="The highest value.")
    last_at = models.DateTimeField(null=True, blank=True)
    last_event = models.BigIntegerField(null=True, blank=True, help_text="The latest event's id.")
    last_value = models.BigIntegerField(null=True, blank=True, help_text="The latest event's value.")
    distinct_new = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["day"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "meter", "period_start", "day"],
                condition=models.Q(meter__isnull=False),
                name="billing_usageday_meter",
            ),
            models.UniqueConstraint(
                fields=["organization", "feature", "period_start", "day"],
                condition=models.Q(feature__isnull=False),
                name="billing_usageday_feature",
            ),
            models.CheckConstraint(
                condition=models.Q(meter__isnull=False, feature__isnull=True)
                | models.Q(meter__isnull=True, feature__isnull=False),
                name="billing_usageday_meter_or_feature",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.total:+d} ({self.events} events)"


class MeterReport(models.Model):
    """The outbox of usage sent to Stripe: one row per (organization, feature, period, window).

    A row is written (pending) before Stripe is called, with an identifier derived from its
    unique fields; a resend after a crash carries the same identifier, which Stripe dedupes.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    # Not in Stripe yet: both are owed to Stripe and retried with back-off (failed: after
    # MAX_ATTEMPTS quick retries, or an authentication error; shown to staff, still retried).
    UNSENT = (Status.PENDING, Status.FAILED)

    organization = models.ForeignKey(
        "teams.Organization", on_delete=models.CASCADE, related_name="meter_reports"
    )
    feature = models.ForeignKey(Feature, on_delete=models.PROTECT, related_name="+")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    window = models.PositiveIntegerField(help_text="1 for the period's first report, then 2, 3…")
    quantity = models.BigIntegerField(help_text="Usage added since the previous window (may be negative).")
    total = models.BigIntegerField(help_text="The period's usage once this report is counted.")
    identifier = models.CharField(max_length=100, unique=True)
    stripe_customer_id = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "feature", "period_start", "window"],
                name="billing_meterreport_one_per_window",
            ),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="billing_meterreport_due")]

    def __str__(self) -> str:
        return f"{self.identifier} {self.quantity:+d} ({self.status})"
