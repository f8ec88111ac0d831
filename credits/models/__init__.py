"""Prepaid credits: accounts, grants, the append-only ledger, reservations, packages and prices."""

from credits.models.accounts import CreditAccount
from credits.models.catalog import CreditPackage, CreditPrice
from credits.models.ledger import (
    CREDIT_IN_TYPES,
    CreditAllocation,
    CreditDispute,
    CreditGrant,
    CreditReservation,
    CreditTransaction,
    CreditUsageDay,
    DisputeStatus,
    GrantSource,
    ReservationStatus,
    TransactionType,
)
from credits.models.recharges import CreditPurchase, CreditRecharge, PurchaseStatus, RechargeStatus

__all__ = [
    "CREDIT_IN_TYPES",
    "CreditAccount",
    "CreditAllocation",
    "CreditDispute",
    "CreditGrant",
    "CreditPackage",
    "CreditPrice",
    "CreditPurchase",
    "CreditRecharge",
    "CreditReservation",
    "CreditTransaction",
    "CreditUsageDay",
    "DisputeStatus",
    "GrantSource",
    "PurchaseStatus",
    "RechargeStatus",
    "ReservationStatus",
    "TransactionType",
]
