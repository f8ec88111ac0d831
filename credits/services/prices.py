"""What actions cost (versioned prices) and the packages sold."""

from django.db import IntegrityError, transaction
from django.utils import timezone

from common.errors import ServiceError
from common.validators import bullets_problem
from credits import conf
from credits.models import (
    CreditPackage,
    CreditPrice,
)
from credits.services.validation import Quote, _check_amount, _text


def credit_price_current(*, action: str) -> CreditPrice:
    """The version of `action`'s price in effect now.

    An action listed in the defaults gets its version 1 written the first time it is asked for,
    so a fresh installation prices its actions without a seeding step.
    """
    now = timezone.now()
    price = CreditPrice.objects.filter(action=action, effective_from__lte=now).order_by("-version").first()
    if price is not None:
        return price
    default = next((p for p in conf.DEFAULT_PRICES if p[0] == action), None)
    if default is None or CreditPrice.objects.filter(action=action).exists():
        raise ServiceError("unknown_action", f"No price is set for {action!r}.", field="action")
    _, credits, unit, unit_size, description = default
    price, _ = CreditPrice.objects.get_or_create(
        action=action,
        version=1,
        defaults={"credits": credits, "unit": unit, "unit_size": unit_size, "description": description},
    )
    return price


def credit_price_set(
    *, action: str, credits: int, unit: str = "call", unit_size: int = 1, description: str = ""
) -> CreditPrice:
    """A new version of `action`'s price; earlier versions stay for the ledger lines that used them."""
    action = (action or "").strip()
    if not action:
        raise ServiceError("action_required", "Name the action.", field="action")
    _check_amount(credits, field="credits", allow_zero=True)
    _check_amount(unit_size, field="unit_size")
    for _ in range(3):
        version = (
            CreditPrice.objects.filter(action=action)
            .order_by("-version")
            .values_list("version", flat=True)
            .first()
            or 0
        ) + 1
        try:
            with transaction.atomic():
                return CreditPrice.objects.create(
                    action=action,
                    version=version,
                    credits=credits,
                    unit=_text(unit, 20) or "call",
                    unit_size=unit_size,
                    description=_text(description, 200),
                )
        except IntegrityError:
            continue  # someone else added the same version number first; take the next
    raise ServiceError("price_conflict", "Prices changed while saving; try again.", status=409)


def credit_prices_seed() -> int:
    """Write version 1 of every default price that is missing. Safe to run again."""
    created = 0
    for action, *_ in conf.DEFAULT_PRICES:
        if not CreditPrice.objects.filter(action=action).exists():
            credit_price_current(action=action)
            created += 1
    return created


def credits_estimate(*, action: str, quantity: int = 1) -> Quote:
    action = (action or "").strip()
    if not action:
        raise ServiceError("action_required", "Name the action to price.", field="action")
    quantity = _check_amount(quantity, field="quantity")
    price = credit_price_current(action=action)
    return Quote(action=action, quantity=quantity, credits=price.cost(quantity), price=price)


def _resolve_amount(*, amount: int | None, action: str, quantity: int) -> Quote:
    if action and amount is not None:
        raise ServiceError("amount_or_action", "Give an amount or an action, not both.", field="amount")
    if action:
        quote = credits_estimate(action=action, quantity=quantity)
        if quote.credits == 0:
            raise ServiceError(
                "free_action", f"{action!r} costs nothing; there is nothing to charge.", field="action"
            )
        return quote
    if amount is None:
        raise ServiceError("amount_required", "Give an amount, or an action and a quantity.", field="amount")
    return Quote(action="", quantity=1, credits=_check_amount(amount), price=None)


def credit_package_create(
    *,
    code: str,
    name: str,
    credits: int,
    unit_amount: int,
    bonus_credits: int = 0,
    currency: str = "usd",
    description: str = "",
    sort_order: int = 0,
    bullets: list[str] | None = None,
) -> CreditPackage:
    code = (code or "").strip().lower()
    if not code or not code.replace("-", "").replace("_", "").isalnum():
        raise ServiceError("invalid_code", "Use letters, digits and dashes for the code.", field="code")
    if not (name or "").strip():
        raise ServiceError("name_required", "Name the package.", field="name")
    _check_amount(credits, field="credits")
    _check_amount(bonus_credits, field="bonus_credits", allow_zero=True)
    _check_amount(unit_amount, field="unit_amount", allow_zero=True)
    bullets = list(bullets or [])
    problem = bullets_problem(bullets)
    if problem:
        raise ServiceError("invalid_bullets", f"Bullets: {problem}.", field="bullets")
    currency = (currency or "").strip().lower()
    if len(currency) != 3 or not currency.isalpha():
        raise ServiceError(
            "invalid_currency", "Use a three-letter currency code, like usd.", field="currency"
        )
    try:
        with transaction.atomic():
            return CreditPackage.objects.create(
                code=code,
                name=name.strip()[:80],
                credits=credits,
                bonus_credits=bonus_credits,
                unit_amount=unit_amount,
                currency=currency,
                description=_text(description, 200),
                sort_order=sort_order,
                bullets=[b.strip() for b in bullets],
            )
    except IntegrityError:
        raise ServiceError(
            "package_exists", f"A package {code!r} already exists.", field="code", status=409
        ) from None


def credits_seed_packages() -> int:
    """Create the default packages that do not exist yet. Safe to run again."""
    created = 0
    for order, (code, name, credits, bonus, unit_amount, description) in enumerate(conf.DEFAULT_PACKAGES):
        _, was_created = CreditPackage.objects.get_or_create(
            code=code,
            defaults={
                "name": name,
                "credits": credits,
                "bonus_credits": bonus,
                "unit_amount": unit_amount,
                "description": description,
                "sort_order": order,
                "bullets": conf.DEFAULT_PACKAGE_BULLETS.get(code, []),
            },
        )
        created += was_created
    return created
