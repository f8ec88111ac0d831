"""Subscriptions: Checkout, the sync from Stripe (one trial, one live subscription), the payments
Stripe reports, and the changes a person makes. `periods` is where the apps above billing hook
into a billing period's start and an early end.

Its public names, loaded from their module on first use (`common.lazy`); code inside the
package imports the module itself."""

from common.lazy import exports

_EXPORTS = {
    "CardSetup": "cards",
    "card_setup_last_failure": "cards",
    "card_setup_settle": "cards",
    "card_setup_start": "cards",
    "AddonPreview": "addons",
    "addon_checkout_return": "addons",
    "addon_checkout_start": "addons",
    "addon_find": "addons",
    "addon_purchases_active": "addons",
    "addon_quantity": "addons",
    "addon_subscription_add": "addons",
    "addon_subscription_preview": "addons",
    "addon_subscription_remove": "addons",
    "addons_for": "addons",
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
    "change_seats": "changes",
    "subscription_change_preview": "changes",
    "subscription_refund_and_cancel": "changes",
    "subscription_resume": "changes",
    "upcoming_invoice": "changes",
}

__all__, __getattr__ = exports(__name__, _EXPORTS)
