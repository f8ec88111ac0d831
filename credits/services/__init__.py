"""Every change to credits goes through here: one module per concern, `ledger` at the bottom
(a balance moves only together with a ledger line, in one short transaction).

Its public names, loaded from their module on first use (`common.lazy`); code inside the
package imports the module itself."""

from common.lazy import exports

_EXPORTS = {
    "InsufficientCredits": "validation",
    "MAX_AMOUNT": "validation",
    "Quote": "validation",
    "WELCOME_BONUS_KEY": "validation",
    "SINGLE_STATEMENT_DEBIT": "debits",
    "credits_spendable": "debits",
    "credits_adjust": "spending",
    "credits_consume": "spending",
    "credits_grant": "spending",
    "credits_granted": "spending",
    "credits_refund": "spending",
    "credit_account_for": "accounts",
    "credit_account_update": "accounts",
    "credit_package_create": "prices",
    "credit_price_current": "prices",
    "credit_price_set": "prices",
    "credit_prices_seed": "prices",
    "credits_estimate": "prices",
    "credits_seed_packages": "prices",
    "credit_reservation_cancel": "reservations",
    "credit_reservation_confirm": "reservations",
    "credit_reservation_create": "reservations",
    "credit_reservations_expire": "reservations",
    "credit_grant_expire": "expiry",
    "credit_grants_expire": "expiry",
    "credit_recharge_failed_alert_send": "alerts",
    "credits_low_balance_alert_send": "alerts",
    "credit_grant_refunded": "purchases",
    "credit_package_get": "purchases",
    "credit_purchase_complete": "purchases",
    "credit_purchase_end": "purchases",
    "credit_purchase_processing": "purchases",
    "credit_purchase_refunded": "purchases",
    "credit_purchase_start": "purchases",
    "credit_allowance_disputes_apply": "disputes",
    "credit_dispute_record": "disputes",
    "RECHARGE_IN_FLIGHT": "recharges",
    "RECHARGE_RESUME_WINDOW": "recharges",
    "credit_auto_recharge_start": "recharges",
    "credit_recharge_charge": "recharges",
    "credit_recharge_confirm_check": "recharges",
    "credit_recharge_confirm_check_by_intent": "recharges",
    "credit_recharge_confirm_start": "recharges",
    "credit_recharge_confirmed": "recharges",
    "credit_recharge_fail": "recharges",
    "credit_recharge_succeed": "recharges",
    "credit_recharges_resume": "recharges",
}

__all__, __getattr__ = exports(__name__, _EXPORTS)
