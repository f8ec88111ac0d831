"""What the entitlement engine answers: a feature's entitlement, the effective set, and a Decision
with its reason and upgrade."""

from dataclasses import asdict, dataclass, field
from datetime import datetime

from billing.models import Overage, PlanEntitlement, SubscriptionStatus
from billing.periods import Period, usage_period

UNLIMITED = PlanEntitlement.UNLIMITED


class Reason:
    OK = "ok"
    UNKNOWN_FEATURE = "unknown_feature"
    RESTRICTED = "restricted"
    NOT_INCLUDED = "not_included"
    LIMIT_REACHED = "limit_reached"
    QUOTA_EXCEEDED = "quota_exceeded"


@dataclass(frozen=True)
class Upgrade:
    kind: str  # "plan", "addon" or "contact"
    key: str
    name: str
    amount: int | None
    currency: str
    interval: str
    quantity: int
    url: str


@dataclass(frozen=True)
class Decision:
    feature: str
    allowed: bool
    reason: str
    requested: int = 0
    used: int = 0
    limit: int | None = None  # None when unlimited or not a counted feature
    unlimited: bool = False
    overage: str = Overage.BLOCK
    period_start: datetime | None = None
    period_end: datetime | None = None
    warning: int | None = None  # the highest warning threshold reached, in percent
    upgrade: Upgrade | None = None
    replayed: bool = False
    name: str = ""
    unit: str = ""

    @property
    def payable_with_credits(self) -> bool:
        """The quota is used up and the plan lets the overage be paid with credits: the caller
        charges credits for the work instead of refusing it."""
        return self.reason == Reason.QUOTA_EXCEEDED and self.overage == Overage.CREDITS

    @property
    def remaining(self) -> int | None:
        if self.unlimited or self.limit is None:
            return None
        return max(self.limit - self.used, 0)

    @property
    def percent(self) -> int:
        if not self.limit:
            return 0 if self.unlimited or self.limit is None else 100
        return min(100, self.used * 100 // self.limit)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["remaining"] = self.remaining
        return data


@dataclass(frozen=True)
class FeatureEntitlement:
    key: str
    kind: str
    name: str
    unit: str
    enabled: bool
    limit: int  # UNLIMITED (-1) or a number; 0 for boolean features
    overage: str
    warn_at: tuple[int, ...]
    feature_id: int
    sort_order: int
    # A limit fed by a gauge meter: its usage is the meter's latest value times the scale.
    gauge_meter_id: int | None = None
    gauge_scale: int = 1

    @property
    def unlimited(self) -> bool:
        return self.enabled and self.limit == UNLIMITED


@dataclass(frozen=True)
class Effective:
    version: str
    plan_key: str
    plan_name: str
    anchor: datetime | None
    plan_interval: str = "month"
    status: str = ""  # the subscription's, empty without one
    grace_until: datetime | None = None
    dispute_grace_until: datetime | None = None
    features: dict[str, FeatureEntitlement] = field(default_factory=dict)
    valid_until: datetime | None = None
    generation: str = ""  # the organization's cache generation its data was read under

    def period(self, at: datetime) -> Period:
        return usage_period(self.anchor, at)

    def restricted(self, at: datetime) -> bool:
        """Past due (or its payment disputed) and out of grace: data stays visible, nothing new
        may be created or used."""
        if self.dispute_grace_until is not None and at >= self.dispute_grace_until:
            return True
        return self.status == SubscriptionStatus.PAST_DUE and (
            self.grace_until is not None and at >= self.grace_until
        )
