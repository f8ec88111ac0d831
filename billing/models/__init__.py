from billing.models.catalog import (
    Addon,
    AddonEntitlement,
    EntitlementGrant,
    Feature,
    Interval,
    Overage,
    Plan,
    PlanEntitlement,
    PlanLineItem,
    Product,
    SeatPolicy,
)
from billing.models.state import (
    ENDED_STATUSES,
    PLAN_STATUSES,
    Access,
    OrgSubscription,
    Payment,
    SubscriptionDuplicate,
    SubscriptionStatus,
    TrialRecord,
    UsageAlert,
    UsageCounter,
    UsageEvent,
)
from billing.models.usage import Aggregation, Meter, MeterEvent, MeterReport

__all__ = [
    "ENDED_STATUSES",
    "PLAN_STATUSES",
    "Access",
    "Addon",
    "AddonEntitlement",
    "EntitlementGrant",
    "Feature",
    "Interval",
    "OrgSubscription",
    "Overage",
    "Payment",
    "Plan",
    "PlanEntitlement",
    "PlanLineItem",
    "Product",
    "SeatPolicy",
    "SubscriptionDuplicate",
    "SubscriptionStatus",
    "TrialRecord",
    "UsageAlert",
    "UsageCounter",
    "UsageEvent",
]

__all__ += ["Aggregation", "Meter", "MeterEvent", "MeterReport"]
