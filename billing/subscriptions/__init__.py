"""Subscriptions: Checkout, the sync from Stripe (one trial, one live subscription), the payments
Stripe reports, and the changes a person makes. `periods` is where the apps above billing hook
into a billing period's start and an early end.

The names below are the package's public surface, loaded from their module on first use so
that importing one module of the package never imports the others (no import cycles through
here). Code inside billing imports the module itself."""

from importlib import import_module

_EXPORTS = {
    "checkout_complete": "checkout",
    "checkout_expired": "checkout",
    "checkout_line_items": "checkout",
    "checkout_payment_failed": "checkout",
    "checkout_session_state": "checkout",
    "checkout_sessions_expire_earlier": "checkout",
    "checkout_start": "checkout",
    "plan_checkout_settle": "checkout",
    "trial_available": "checkout",
    "billing_currency": "checkout",
    "LIVE_STATUSES": "sync",
    "live_subscriptions": "sync",
    "subscription_duplicate_end": "sync",
    "subscription_sync": "sync",
    "charge_disputed": "payments",
    "dispute_restriction_refresh": "payments",
    "invoice_record": "payments",
    "charge_refunded": "refunds",
    "Preview": "changes",
    "money_back_deadline": "changes",
    "portal_url": "changes",
    "preview_lines": "changes",
    "subscription_cancel": "changes",
    "subscription_change": "changes",
    "subscription_change_preview": "changes",
    "subscription_refund_and_cancel": "changes",
    "subscription_resume": "changes",
    "upcoming_invoice": "changes",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
