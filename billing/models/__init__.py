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
)
from billing.models.state import (
    PLAN_STATUSES,
    OrgSubscription,
    SubscriptionStatus,
    UsageAlert,
    UsageCounter,
    UsageEvent,
)

__all__ = [
    "PLAN_STATUSES",
    "Addon",
    "AddonEntitlement",
    "EntitlementGrant",
    "Feature",
    "Interval",
    "OrgSubscription",
    "Overage",
    "Plan",
    "PlanEntitlement",
    "PlanLineItem",
    "Product",
    "SubscriptionStatus",
    "UsageAlert",
    "UsageCounter",
    "UsageEvent",
]
