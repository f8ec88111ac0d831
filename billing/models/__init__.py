from billing.models.addons import AddonPurchase
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
    SeatMode,
    SeatPolicy,
    TaxBehavior,
)
from billing.models.discounts import Coupon, Duration, PromotionCode, SubscriptionDiscount
from billing.models.events import StripeEventOutcome
from billing.models.notices import Notice, NoticeKind, NoticePreference
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
    SeatSyncDue,
    SubscriptionDuplicate,
    SubscriptionStatus,
    TrialRecord,
    UsageAlert,
    UsageCounter,
)
from billing.models.tax import BillingProfile
from billing.models.usage import Aggregation, Meter, MeterReport, UsageDay, UsageEvent

__all__ = [
    "ENDED_STATUSES",
    "PLAN_STATUSES",
    "Access",
    "Addon",
    "AddonEntitlement",
    "AddonPurchase",
    "CheckoutOutcome",
    "DisputeState",
    "EntitlementGrant",
    "Feature",
    "Interval",
    "Notice",
    "NoticeKind",
    "NoticePreference",
    "OrgSubscription",
    "Overage",
    "Payment",
    "PaymentDispute",
    "Plan",
    "PlanCheckout",
    "PlanEntitlement",
    "PlanLineItem",
    "Product",
    "SeatMode",
    "SeatPolicy",
    "SeatSyncDue",
    "StripeEventOutcome",
    "SubscriptionDuplicate",
    "SubscriptionStatus",
    "TrialRecord",
    "UsageAlert",
    "UsageCounter",
]

__all__ += ["Aggregation", "Meter", "MeterReport", "UsageDay", "UsageEvent"]
__all__ += ["Coupon", "Duration", "PromotionCode", "SubscriptionDiscount", "TaxBehavior"]
__all__ += ["BillingProfile"]
__all__ += ["CatalogStripeState", "PriceChange", "PriceMigration", "PriceVersion"]
