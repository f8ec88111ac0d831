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
    PLAN_STATUSES,
    Access,
    CheckoutOutcome,
    OrgSubscription,
    Payment,
    PlanCheckout,
    SubscriptionStatus,
    UsageAlert,
    UsageCounter,
    UsageEvent,
)
from billing.models.usage import Aggregation, Meter, MeterEvent, MeterReport

__all__ = [
    "PLAN_STATUSES",
    "Access",
    "Addon",
    "AddonEntitlement",
    "CheckoutOutcome",
    "EntitlementGrant",
    "Feature",
    "Interval",
    "OrgSubscription",
    "Overage",
    "Payment",
    "Plan",
    "PlanCheckout",
    "PlanEntitlement",
    "PlanLineItem",
    "Product",
    "SeatPolicy",
    "SubscriptionStatus",
    "UsageAlert",
    "UsageCounter",
    "UsageEvent",
]

__all__ += ["Aggregation", "Meter", "MeterEvent", "MeterReport"]
