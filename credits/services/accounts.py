"""An organization's credit account: opened once with its welcome bonus, and its settings."""

from datetime import timedelta

import stripe
from django.db import transaction
from django.utils import timezone

from billing.gateway import payments
from common.errors import ServiceError
from credits import conf, selectors
from credits.models import (
    CreditAccount,
    CreditPackage,
    GrantSource,
    TransactionType,
)
from credits.services.ledger import _credit
from credits.services.validation import WELCOME_BONUS_KEY, _check_amount
from teams.models import Organization, User
from teams.services import audit_record


def credit_account_for(*, organization: Organization) -> CreditAccount:
    """The organization's account, created on first use with the welcome bonus.

    The bonus has a fixed idempotency key, so it is granted once however often this runs.
    """
    account = CreditAccount.objects.filter(organization=organization).first()
    if account is not None:
        return account
    with transaction.atomic():
        account, created = CreditAccount.objects.get_or_create(organization=organization)
        bonus = conf.welcome_bonus()
        if created and bonus > 0:
            days = conf.welcome_bonus_days()
            _credit(
                account_id=account.pk,
                amount=bonus,
                type=TransactionType.BONUS,
                source=GrantSource.BONUS,
                idempotency_key=WELCOME_BONUS_KEY,
                expires_at=timezone.now() + timedelta(days=days) if days else None,
                description="Welcome bonus",
            )
            account.refresh_from_db()
    return account


def _require_card_on_file(organization: Organization) -> None:
    """Auto-recharge charges the saved card with nobody present: without one it could only fail."""
    try:
        has_card = payments.payment_card_on_file(organization=organization)
    except stripe.StripeError:
        raise ServiceError(
            "stripe_unavailable", "Stripe did not answer; nothing changed. Try again.", status=503
        ) from None
    if not has_card:
        raise ServiceError(
            "card_required",
            "Auto-recharge needs a saved card: buy a package once and its card is kept for recharges.",
            field="auto_recharge_enabled",
        )


def credit_account_update(
    *,
    organization: Organization,
    actor: User,
    low_balance_threshold: int,
    auto_recharge_enabled: bool,
    auto_recharge_threshold: int,
    auto_recharge_package: CreditPackage | None,
    auto_recharge_monthly_limit: int,
    low_balance_percent: int = 0,
    ip_address: str | None = None,
) -> CreditAccount:
    """Alert and auto-recharge settings. Never touches the balance.

    `low_balance_percent` (1-100) makes the threshold that percentage of the last purchase or
    allowance, recomputed at every new one (`low_balance_threshold` is then ignored); 0 keeps
    the threshold a fixed number of credits."""
    _check_amount(low_balance_percent, field="low_balance_threshold", allow_zero=True)
    if low_balance_percent > 100:
        raise ServiceError(
            "percent_out_of_range", "A percentage is between 1 and 100.", field="low_balance_threshold"
        )
    _check_amount(low_balance_threshold, field="low_balance_threshold", allow_zero=True)
    _check_amount(auto_recharge_threshold, field="auto_recharge_threshold", allow_zero=True)
    _check_amount(auto_recharge_monthly_limit, field="auto_recharge_monthly_limit", allow_zero=True)
    if auto_recharge_enabled:
        if auto_recharge_package is None or not auto_recharge_package.is_active:
            raise ServiceError(
                "package_required",
                "Choose the package to buy when recharging.",
                field="auto_recharge_package",
            )
        if auto_recharge_threshold <= 0:
            raise ServiceError(
                "threshold_required",
                "Choose the balance below which to recharge.",
                field="auto_recharge_threshold",
            )
        if auto_recharge_monthly_limit < auto_recharge_package.unit_amount:
            raise ServiceError(
                "limit_below_package",
                "The monthly limit must allow at least one recharge of the chosen package.",
                field="auto_recharge_monthly_limit",
            )
    account = credit_account_for(organization=organization)
    if auto_recharge_enabled and not account.auto_recharge_enabled:
        _require_card_on_file(organization)
    if low_balance_percent:
        # Same rounding as the database's when a grant moves it (`ledger._threshold_follow`).
        low_balance_threshold = (selectors.last_refill_of(account) or 0) * low_balance_percent // 100
    values = {
        "low_balance_percent": low_balance_percent,
        "low_balance_threshold": low_balance_threshold,
        "auto_recharge_enabled": auto_recharge_enabled,
        "auto_recharge_threshold": auto_recharge_threshold,
        "auto_recharge_package_id": auto_recharge_package.pk if auto_recharge_package else None,
        "auto_recharge_monthly_limit": auto_recharge_monthly_limit,
    }
    changed = {k: [getattr(account, k), v] for k, v in values.items() if getattr(account, k) != v}
    if changed:
        with transaction.atomic():
            CreditAccount.objects.filter(pk=account.pk).update(**values)
            audit_record(
                organization=organization,
                action="credits.settings_changed",
                actor=actor,
                target=organization.slug,
                data=changed,
                ip_address=ip_address,
            )
        for field, value in values.items():
            setattr(account, field, value)
    return account
