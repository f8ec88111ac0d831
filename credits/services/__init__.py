"""Every change to credits goes through here: one module per concern, `ledger` at the bottom
(a balance moves only together with a ledger line, in one short transaction).

The names below are the package's public surface, loaded from their module on first use so
that importing one module of the package never imports the others (no import cycles through
here). Code inside credits.services imports the module itself."""

from importlib import import_module

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
    "credit_dispute_record": "disputes",
    "credit_allowance_disputes_apply": "disputes",
    "RECHARGE_IN_FLIGHT": "recharges",
    "RECHARGE_RESUME_WINDOW": "recharges",
    "credit_auto_recharge_start": "recharges",
    "credit_recharge_charge": "recharges",
    "credit_recharge_fail": "recharges",
    "credit_recharge_succeed": "recharges",
    "credit_recharges_resume": "recharges",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
