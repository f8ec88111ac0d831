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
    TaxBehavior,
)
from billing.models.discounts import Coupon, Duration, PromotionCode, SubscriptionDiscount
from billing.models.events import StripeEventOutcome
from billing.models.push import CatalogStripeState, PriceChange, PriceMigration, PriceVersion
from billing.models.state import (
    ENDED_STATUSES,
    PLAN_STATUSES,
    Access,
    CheckoutOutcome,
    DisputeState,
    OrgSubscription,
    Payment,
    PaymentDispute,
    PlanCheckout,
    SubscriptionDuplicate,
    SubscriptionStatus,
    TrialRecord,
    UsageAlert,
    UsageCounter,
    UsageEvent,
)
from billing.models.tax import BillingProfile
from billing.models.usage import Aggregation, Meter, MeterEvent, MeterReport

__all__ = [
    "ENDED_STATUSES",
    "PLAN_STATUSES",
    "Access",
    "Addon",
    "AddonEntitlement",
    "CheckoutOutcome",
    "DisputeState",
    "EntitlementGrant",
    "Feature",
    "Interval",
    "OrgSubscription",
    "Overage",
    "Payment",
    "PaymentDispute",
    "Plan",
    "PlanCheckout",
    "PlanEntitlement",
    "PlanLineItem",
    "Product",
    "SeatPolicy",
    "StripeEventOutcome",
    "SubscriptionDuplicate",
    "SubscriptionStatus",
    "TrialRecord",
    "UsageAlert",
    "UsageCounter",
    "UsageEvent",
]

__all__ += ["Aggregation", "Meter", "MeterEvent", "MeterReport"]
__all__ += ["Coupon", "Duration", "PromotionCode", "SubscriptionDiscount", "TaxBehavior"]
__all__ += ["BillingProfile"]
__all__ += ["CatalogStripeState", "PriceChange", "PriceMigration", "PriceVersion"]
