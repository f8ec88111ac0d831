"""Every change to credits goes through here.

A balance moves only together with a ledger line, in one short transaction: a single conditional
`UPDATE ... RETURNING` on the account row both checks the funds and takes the row lock, then the
grants are drawn and the ledger line is inserted. The account lock serializes everything that
touches an account's grants, so the grants need no locks of their own.

Idempotency: every ledger line and reservation carries a key that is unique per account. A
retried call hits the unique index, its transaction rolls back, and the original is returned.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import stripe
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction
from django.db.backends.postgresql.psycopg_any import is_psycopg3
from django.db.models import F, Q, Sum
from django.db.models.functions import Least
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from billing import services_payments
from billing.allowances import allowance_key_parse
from billing.models import Payment, PaymentDispute
from common.errors import ServiceError
from credits import conf, selectors
from credits.models import (
    CreditAccount,
    CreditAllocation,
    CreditDispute,
    CreditGrant,
    CreditPackage,
    CreditPrice,
    CreditPurchase,
    CreditRecharge,
    CreditReservation,
    CreditTransaction,
    DisputeStatus,
    GrantSource,
    PurchaseStatus,
    RechargeStatus,
    ReservationStatus,
    TransactionType,
)
from teams.models import Organization, Role, User
from teams.services import audit_record

# Large enough for any real use, small enough that sums never leave a 64-bit integer.
MAX_AMOUNT = 10**12
WELCOME_BONUS_KEY = "welcome-bonus"


class InsufficientCredits(ServiceError):
    """HTTP 402: the account cannot cover `required` credits."""

    def __init__(self, *, required: int, balance: int, available: int):
        super().__init__(
            "insufficient_credits",
            f"This needs {required:,} credits; {max(available, 0):,} are available.",
            status=402,
        )
        self.required = required
        self.balance = balance
        self.available = available

    def as_dict(self) -> dict:
        return {
            "code": self.code,
            "message": self.message,
            "required": self.required,
            "balance": self.balance,
            "available": self.available,
        }


@dataclass(frozen=True)
class Quote:
    """What an action costs now: the price version that applies and the credits it comes to."""

    action: str
    quantity: int
    credits: int
    price: CreditPrice | None


# --- Validation -----------------------------------------------------------------------------


def _check_amount(amount, *, field: str = "amount", allow_zero: bool = False) -> int:
    # bool is an int in Python; True credits is a bug, not one credit.
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise ServiceError("invalid_amount", "Give a whole number of credits.", field=field)
    if amount < 0 or (amount == 0 and not allow_zero):
        raise ServiceError("invalid_amount", "The amount must be a positive number of credits.", field=field)
    if amount > MAX_AMOUNT:
        raise ServiceError("invalid_amount", f"The amount must be at most {MAX_AMOUNT:,}.", field=field)
    return amount


def _check_key(key: str | None) -> str:
    key = (key or "").strip()
    if not key:
        raise ServiceError(
            "idempotency_key_required",
            "Send an idempotency key, so that a retried request is not charged twice.",
            field="idempotency_key",
        )
    if len(key) > 255:
        raise ServiceError(
            "invalid_idempotency_key", "Keep the key under 256 characters.", field="idempotency_key"
        )
    return key


def _text(value: str, limit: int) -> str:
    return (value or "").strip()[:limit]


# --- Prices ---------------------------------------------------------------------------------


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


# --- Packages -------------------------------------------------------------------------------


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
) -> CreditPackage:
    code = (code or "").strip().lower()
    if not code or not code.replace("-", "").replace("_", "").isalnum():
        raise ServiceError("invalid_code", "Use letters, digits and dashes for the code.", field="code")
    if not (name or "").strip():
        raise ServiceError("name_required", "Name the package.", field="name")
    _check_amount(credits, field="credits")
    _check_amount(bonus_credits, field="bonus_credits", allow_zero=True)
    _check_amount(unit_amount, field="unit_amount", allow_zero=True)
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
            },
        )
        created += was_created
    return created


# --- Accounts -------------------------------------------------------------------------------


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
        has_card = services_payments.payment_card_on_file(organization=organization)
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
    ip_address: str | None = None,
) -> CreditAccount:
    """Alert and auto-recharge settings. Never touches the balance."""
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
    values = {
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


# --- The ledger's moving parts ----------------------------------------------------------------

_RETURNING = (
    "id, organization_id, balance, held, frozen, overdraft_allowance, low_balance_threshold, "
    "auto_recharge_enabled, auto_recharge_threshold"
)


def _spend_check(*, amount: str, now: str, account: str) -> str:
    """SQL for "`amount` more may be spent (or held)": never the frozen credits, never those of a
    grant past its date (`expired`) and never those open holds need, counting every hold as
    backed by valid credits (a hold made before a grant expired may end up drawing on it, but
    nothing else does); the overdraft only when nothing is frozen or expired, so that an
    overdraft always means every grant is empty. Placeholders only: values are parameters."""
    expired = (
        f"(SELECT COALESCE(SUM(g.remaining), 0) FROM {CreditGrant._meta.db_table} AS g "  # noqa: S608
        f"WHERE g.account_id = {account} AND g.remaining > 0 AND g.expires_at <= {now})"
    )
    return (
        f"balance - {amount} >= frozen + held + {expired} "
        f"- CASE WHEN frozen = 0 AND {expired} = 0 THEN overdraft_allowance ELSE 0 END"
    )


_RETURNING_NAMES = [name.strip() for name in _RETURNING.split(",")]


def _fetchone(sql: str, params) -> tuple | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _account_move(
    *,
    account_id: int | None = None,
    organization_id: int | None = None,
    balance: int = 0,
    held: int = 0,
    used: int = 0,
    purchased: int = 0,
    frozen: int = 0,
    spend: int | None = None,
) -> CreditAccount | None:
    """Move an account's figures in one conditional UPDATE and return the row as it now is.

    With `spend`, the row changes only if that many credits are spendable (overdraft included);
    None means they were not (or that there is no account). The UPDATE holds the row lock until
    the surrounding transaction ends.
    """
    where = "id = %s" if account_id is not None else "organization_id = %s"
    params = [
        balance,
        held,
        frozen,
        used,
        purchased,
        account_id if account_id is not None else organization_id,
    ]
    if spend is not None:
        table = CreditAccount._meta.db_table
        where += " AND " + _spend_check(amount="%s", now="%s", account=f"{table}.id")
        now = timezone.now()
        params += [spend, now, now]
    # Only constant fragments are interpolated; every value travels as a parameter.
    sql = (
        f"UPDATE {CreditAccount._meta.db_table} SET balance = balance + %s, held = held + %s, "  # noqa: S608
        f"frozen = frozen + %s, "
        f"lifetime_used = lifetime_used + %s, lifetime_purchased = lifetime_purchased + %s "
        f"WHERE {where} RETURNING {_RETURNING}"
    )
    row = _fetchone(sql, params)
    if row is None:
        return None
    return CreditAccount(**dict(zip(_RETURNING_NAMES, row, strict=True)))


def _grants_draw(
    *, account_id: int, amount: int, set_aside: bool = False
) -> tuple[list[tuple[int, int]], int]:
    """Take up to `amount` from the account's grants: by priority, then soonest expiry, then oldest,
    never from a grant past its date nor from its owed or disputed credits.

    `set_aside` (a confirmed reservation) may then reach what a hold kept aside while it was
    valid: credits of grants that expired since, then disputed, then owed ones, in that order.
    Returns (grant id, credits taken) and how many of those were frozen. Less than `amount` is
    taken only in overdraft, when every grant is empty. Call with the account row locked.
    """
    now = timezone.now()
    grants = list(
        CreditGrant.objects.filter(account_id=account_id, remaining__gt=0).order_by(
            *CreditGrant._meta.ordering
        )
    )
    taken: dict[int, list[int]] = {}  # grant id -> [credits, from disputed, from owed]
    left = amount

    def take(grant: CreditGrant, room: int, lock: int | None = None) -> None:
        nonlocal left
        part = min(left, room)
        if part <= 0:
            return
        row = taken.setdefault(grant.pk, [0, 0, 0])
        row[0] += part
        if lock is not None:
            row[lock] += part
        left -= part

    for grant in grants:
        if not grant.is_expired(now):
            take(grant, grant.drawable)
    if set_aside:
        for grant in grants:
            if grant.is_expired(now):
                take(grant, grant.drawable)
        for grant in grants:
            take(grant, grant.disputed, 1)
        for grant in grants:
            take(grant, grant.owed, 2)
    for grant_id, (credits, disputed, owed) in taken.items():
        CreditGrant.objects.filter(pk=grant_id).update(
            remaining=F("remaining") - credits, disputed=F("disputed") - disputed, owed=F("owed") - owed
        )
    draws = [(g, row[0]) for g, row in taken.items()]
    return draws, sum(row[1] + row[2] for row in taken.values())


# On PostgreSQL the grants are drawn and the ledger line and its allocations written in one
# statement. It runs after the account UPDATE, so its snapshot already sees every change made
# under the account lock; other databases take the portable path, one statement at a time.
SINGLE_STATEMENT_DEBIT = True

# `moved` names the locked account and its new balance; the rest is the same for both paths.
_DEBIT_SQL = """
WITH moved AS (
    {moved}
), ordered AS (
    SELECT g.id, g.remaining - g.owed - g.disputed AS remaining,
           SUM(g.remaining - g.owed - g.disputed) OVER (
               ORDER BY g.priority, g.expires_at NULLS LAST, g.created_at, g.id
           ) - (g.remaining - g.owed - g.disputed) AS before
    FROM {grant} AS g JOIN moved ON g.account_id = moved.id
    WHERE g.remaining - g.owed - g.disputed > 0 AND (g.expires_at IS NULL OR g.expires_at > %(now)s)
), drawn AS (
    UPDATE {grant} AS g SET remaining = g.remaining - LEAST(o.remaining, %(amount)s - o.before)
    FROM ordered AS o WHERE g.id = o.id AND o.before < %(amount)s
    RETURNING g.id, LEAST(o.remaining, %(amount)s - o.before) AS took
), entry AS (
    INSERT INTO {transaction} ({columns}) SELECT {values} FROM moved RETURNING id
), allocated AS (
    INSERT INTO {allocation} (transaction_id, grant_id, amount)
    SELECT entry.id, drawn.id, -drawn.took FROM entry CROSS JOIN drawn
)
SELECT id, (SELECT COALESCE(SUM(took), 0) FROM drawn) FROM entry
"""
_ENTRY_COLUMNS = [
    "code",
    "account_id",
    "type",
    "amount",
    "balance_after",
    "action",
    "quantity",
    "price_id",
    "description",
    "reference_type",
    "reference_id",
    "idempotency_key",
    "refund_of_id",
    "actor_id",
    "metadata",
    "created_at",
]


def _debit_sql(moved: str) -> str:
    # Only constant fragments are interpolated; every value travels as a parameter.
    def value(name: str) -> str:
        return {
            "account_id": "moved.id",
            "balance_after": "moved.balance",
            "metadata": "%(c_metadata)s::jsonb",
        }.get(name, f"%(c_{name})s")

    return _DEBIT_SQL.format(
        moved=moved,
        grant=CreditGrant._meta.db_table,
        transaction=CreditTransaction._meta.db_table,
        allocation=CreditAllocation._meta.db_table,
        columns=", ".join(_ENTRY_COLUMNS),
        values=", ".join(value(n) for n in _ENTRY_COLUMNS),
    )


def _debit_params(entry: CreditTransaction, amount: int) -> dict:
    params = {f"c_{name}": getattr(entry, name) for name in _ENTRY_COLUMNS}
    params["c_metadata"] = json.dumps(entry.metadata)
    params["amount"] = amount
    params["now"] = timezone.now()
    return params


def _debit_entry(
    *, account: CreditAccount, amount: int, set_aside: bool = False, **fields
) -> CreditTransaction:
    """Draw `amount` from the grants of `account` (locked, balance already moved) and write the
    ledger line with its allocations. Raises IntegrityError if the idempotency key is taken.

    `set_aside`: a confirmed hold, which may reach credits of a grant that expired since it was
    made (never frozen ones here: a confirm with frozen credits takes the portable path)."""
    entry = CreditTransaction(account_id=account.pk, amount=-amount, balance_after=account.balance, **fields)
    if connection.vendor != "postgresql" or not SINGLE_STATEMENT_DEBIT:
        draws, _ = _grants_draw(account_id=account.pk, amount=amount, set_aside=set_aside)
        entry.save(force_insert=True)
        CreditAllocation.objects.bulk_create(
            [CreditAllocation(transaction=entry, grant_id=g, amount=-t) for g, t in draws]
        )
        return entry
    params = _debit_params(entry, amount)
    params.update(account=account.pk, balance=account.balance)
    entry.pk, drawn = _fetchone(
        _debit_sql("SELECT %(account)s::bigint AS id, %(balance)s::bigint AS balance"), params
    )
    entry._state.adding = False
    if set_aside and drawn < amount:
        # The valid grants fell short: the rest was set aside from a grant that expired since.
        draws, _ = _grants_draw(account_id=account.pk, amount=amount - drawn, set_aside=True)
        CreditAllocation.objects.bulk_create(
            [CreditAllocation(transaction=entry, grant_id=g, amount=-t) for g, t in draws]
        )
    return entry


# The whole debit in one round trip, instead of four (BEGIN, the account UPDATE, the draw,
# COMMIT). Both statements travel in one message (client-side parameter binding, PostgreSQL's
# simple query protocol), which the server runs as one implicit transaction: if the second
# fails, the first rolls back too. Each statement takes its own snapshot, so the draw, like on the
# transactional path, starts after the UPDATE holds the account's row lock and sees every
# change committed before it. It only runs in autocommit, where nothing else has written in
# the transaction, so "this transaction wrote the row's version" (`xmin`) means "the UPDATE
# above moved it": when the funds fall short, the UPDATE matches nothing and neither does the
# draw, so the call changes nothing.
_ACCOUNT = CreditAccount._meta.db_table
# Only constant fragments are interpolated; every value travels as a parameter.
_ONE_TRIP_SQL = (
    f"UPDATE {_ACCOUNT} SET balance = balance - %(amount)s, lifetime_used = lifetime_used + %(used)s "  # noqa: S608
    f"WHERE organization_id = %(organization)s AND "
    + _spend_check(amount="%(amount)s", now="%(now)s", account=f"{_ACCOUNT}.id")
    + f" RETURNING {_RETURNING};"
    + _debit_sql(
        f"SELECT id, balance FROM {_ACCOUNT} "  # noqa: S608
        f"WHERE organization_id = %(organization)s AND xmin = pg_current_xact_id()::xid"
    )
)


def _one_trip_possible() -> bool:
    # psycopg 2 returns only the last statement's rows; server-side binding refuses two
    # statements in one message. Both take the transactional path.
    return (
        SINGLE_STATEMENT_DEBIT
        and connection.vendor == "postgresql"
        and is_psycopg3
        and not connection.in_atomic_block
        and not connection.settings_dict.get("OPTIONS", {}).get("server_side_binding")
    )


def _debit_one_trip(
    *, organization_id: int, amount: int, used: int, **fields
) -> tuple[CreditAccount, CreditTransaction] | None:
    """Debit in one round trip (see above); None when the account is missing or short of funds."""
    entry = CreditTransaction(amount=-amount, **fields)
    params = _debit_params(entry, amount)
    params.update(organization=organization_id, used=used)
    with connection.cursor() as cursor:
        cursor.execute(_ONE_TRIP_SQL, params)
        row = cursor.fetchone()
        cursor.nextset()
        inserted = cursor.fetchone()
    if row is None:
        return None
    account = CreditAccount(**dict(zip(_RETURNING_NAMES, row, strict=True)))
    entry.pk, entry.account_id, entry.balance_after = inserted[0], account.pk, account.balance
    entry._state.adding = False
    return account, entry


def _replay(model, *, account_id: int, key: str):
    """The row an earlier call with this idempotency key wrote, marked as replayed."""
    found = model.objects.filter(account_id=account_id, idempotency_key=key).first()
    if found is not None:
        found.replayed = True
    return found


def _replay_for_org(model, *, organization: Organization, key: str):
    account_id = CreditAccount.objects.filter(organization=organization).values_list("pk", flat=True).first()
    return _replay(model, account_id=account_id, key=key) if account_id else None


def _check_same_request(original, *, amount: int, action: str) -> None:
    if abs(original.amount) != amount or original.action != action:
        raise ServiceError(
            "idempotency_key_reused",
            "This idempotency key was already used for a different request.",
            field="idempotency_key",
            status=409,
        )


def _after_debit(account: CreditAccount, *, amount: int, transaction_id: int) -> None:
    """Queue the alert and the recharge for the one debit that crosses their thresholds."""
    from credits import tasks

    before, after = account.balance + amount, account.balance
    if account.crossed_low_balance(before=before, after=after):
        tasks.send_low_balance_alert.delay_on_commit(account.pk, transaction_id)
    if account.crossed_recharge_threshold(before=before, after=after):
        tasks.auto_recharge.delay_on_commit(account.pk)


def _debit(
    *,
    organization: Organization | None = None,
    account_id: int | None = None,
    amount: int,
    type: str,
    idempotency_key: str,
    quote: Quote | None = None,
    description: str = "",
    reference_type: str = "",
    reference_id: str = "",
    metadata: dict | None = None,
    actor: User | None = None,
) -> CreditTransaction:
    action = quote.action if quote else ""
    fields = {
        "type": type,
        "action": action,
        "quantity": quote.quantity if quote and quote.action else None,
        "price": quote.price if quote else None,
        "description": _text(description, 200),
        "reference_type": _text(reference_type, 40),
        "reference_id": _text(reference_id, 100),
        "idempotency_key": idempotency_key,
        "actor": actor,
        "metadata": metadata or {},
    }
    try:
        if organization is not None and _one_trip_possible():
            done = _debit_one_trip(
                organization_id=organization.pk,
                amount=amount,
                used=amount if type == TransactionType.CONSUMPTION else 0,
                **fields,
            )
            if done is not None:
                account, entry = done
                _after_debit(account, amount=amount, transaction_id=entry.pk)
                return entry
            # Short of funds or no account yet: the transactional path below tells which.
        with transaction.atomic():
            account = _account_move(
                organization_id=organization.pk if organization else None,
                account_id=account_id,
                balance=-amount,
                used=amount if type == TransactionType.CONSUMPTION else 0,
                spend=amount,
            )
            if account is None:
                raise _Refused
            entry = _debit_entry(account=account, amount=amount, **fields)
            _after_debit(account, amount=amount, transaction_id=entry.pk)
            return entry
    except IntegrityError:
        # The idempotency key is taken: this exact call already went through.
        if organization is not None:
            original = _replay_for_org(CreditTransaction, organization=organization, key=idempotency_key)
        else:
            original = _replay(CreditTransaction, account_id=account_id, key=idempotency_key)
        if original is None:
            raise
        _check_same_request(original, amount=amount, action=action)
        return original
    except _Refused:
        pass
    # Not enough credits, no account yet, or a replay of a call that used the last credits.
    if organization is not None:
        account = credit_account_for(organization=organization)
    else:
        account = CreditAccount.objects.get(pk=account_id)
    original = _replay(CreditTransaction, account_id=account.pk, key=idempotency_key)
    if original is not None:
        _check_same_request(original, amount=amount, action=action)
        return original
    if organization is not None and credits_spendable(account=account) >= amount:
        # The account was created just now (with its welcome bonus): try once more.
        return _debit(
            account_id=account.pk,
            amount=amount,
            type=type,
            idempotency_key=idempotency_key,
            quote=quote,
            description=description,
            reference_type=reference_type,
            reference_id=reference_id,
            metadata=metadata,
            actor=actor,
        )
    raise InsufficientCredits(
        required=amount, balance=account.balance, available=credits_spendable(account=account)
    )


def credits_spendable(*, account: CreditAccount) -> int:
    """What the account may spend now: the same rule as the spend check in SQL."""
    expired = (
        CreditGrant.objects.filter(
            account=account, remaining__gt=0, expires_at__lte=timezone.now()
        ).aggregate(s=Sum("remaining"))["s"]
        or 0
    )
    overdraft = account.overdraft_allowance if not account.frozen and not expired else 0
    return account.balance - account.frozen - account.held - expired + overdraft


class _Refused(Exception):
    """The conditional update matched no row."""


def _credit(
    *,
    account_id: int,
    amount: int,
    type: str,
    source: str,
    idempotency_key: str,
    expires_at: datetime | None = None,
    priority: int | None = None,
    description: str = "",
    reference_type: str = "",
    reference_id: str = "",
    metadata: dict | None = None,
    actor: User | None = None,
    refund_of: CreditTransaction | None = None,
    restore_to: list[tuple[int, int]] | None = None,
) -> CreditTransaction:
    """Add credits: first repay any overdraft, then refill `restore_to` grants (grant id, room),
    then put the rest in a new grant."""
    try:
        with transaction.atomic():
            account = _account_move(
                account_id=account_id,
                balance=amount,
                purchased=amount if source == GrantSource.PURCHASE else 0,
                used=-amount if type == TransactionType.REFUND else 0,
            )
            before = account.balance - amount
            repaid = min(amount, max(0, -before))
            entry = CreditTransaction.objects.create(
                account_id=account_id,
                type=type,
                amount=amount,
                balance_after=account.balance,
                description=_text(description, 200),
                reference_type=_text(reference_type, 40),
                reference_id=_text(reference_id, 100),
                idempotency_key=idempotency_key,
                refund_of=refund_of,
                actor=actor,
                metadata={**(metadata or {}), **({"overdraft_repaid": repaid} if repaid else {})},
            )
            left = amount - repaid
            allocations = []
            for grant_id, room in restore_to or []:
                put = min(left, room)
                if put > 0:
                    CreditGrant.objects.filter(pk=grant_id).update(remaining=F("remaining") + put)
                    allocations.append(CreditAllocation(transaction=entry, grant_id=grant_id, amount=put))
                    left -= put
            if left > 0:
                grant = CreditGrant.objects.create(
                    account_id=account_id,
                    source=source,
                    amount=left,
                    remaining=left,
                    priority=GrantSource.default_priority(source) if priority is None else priority,
                    expires_at=expires_at,
                    description=_text(description, 200),
                )
                allocations.append(CreditAllocation(transaction=entry, grant=grant, amount=left))
            CreditAllocation.objects.bulk_create(allocations)
            return entry
    except IntegrityError:
        original = _replay(CreditTransaction, account_id=account_id, key=idempotency_key)
        if original is None:
            raise
        if original.amount != amount:
            _check_same_request(original, amount=amount, action="")
        return original


# --- Grants, consumption, refunds, adjustments ----------------------------------------------


def credits_granted(*, organization: Organization, idempotency_key: str) -> bool:
    """Whether a ledger line with this key exists: a cheap look before a replay would."""
    return CreditTransaction.objects.filter(
        account__organization=organization, idempotency_key=idempotency_key
    ).exists()


def credits_grant(
    *,
    organization: Organization,
    amount: int,
    source: str,
    idempotency_key: str,
    expires_at: datetime | None = None,
    priority: int | None = None,
    description: str = "",
    reference_type: str = "",
    reference_id: str = "",
    metadata: dict | None = None,
    actor: User | None = None,
) -> CreditTransaction:
    """Add credits from `source`. Billing calls this for purchases and for a plan's monthly
    allowance (`source=subscription_allowance, expires_at=<period end>`)."""
    _check_amount(amount)
    if source not in GrantSource.values:
        raise ServiceError(
            "invalid_source", f"Choose one of: {', '.join(GrantSource.values)}.", field="source"
        )
    key = _check_key(idempotency_key)
    if expires_at is not None and expires_at <= timezone.now():
        raise ServiceError("invalid_expiry", "The expiry must be in the future.", field="expires_at")
    account = credit_account_for(organization=organization)
    return _credit(
        account_id=account.pk,
        amount=amount,
        type=TransactionType.for_source(source),
        source=source,
        idempotency_key=key,
        expires_at=expires_at,
        priority=priority,
        description=description or GrantSource(source).label,
        reference_type=reference_type,
        reference_id=reference_id,
        metadata=metadata,
        actor=actor,
    )


def credits_consume(
    *,
    organization: Organization,
    idempotency_key: str,
    amount: int | None = None,
    action: str = "",
    quantity: int = 1,
    description: str = "",
    reference_type: str = "",
    reference_id: str = "",
    metadata: dict | None = None,
    actor: User | None = None,
) -> CreditTransaction:
    """Spend `amount` credits, or the price of `quantity` units of `action`.

    Raises InsufficientCredits (402) and changes nothing when the account cannot cover it.
    Called again with the same key, returns the first call's ledger line without charging.
    """
    key = _check_key(idempotency_key)
    quote = _resolve_amount(amount=amount, action=action, quantity=quantity)
    return _debit(
        organization=organization,
        amount=quote.credits,
        type=TransactionType.CONSUMPTION,
        idempotency_key=key,
        quote=quote,
        description=description or (quote.price.description if quote.price else ""),
        reference_type=reference_type,
        reference_id=reference_id,
        metadata=metadata,
        actor=actor,
    )


def credits_refund(
    *,
    consumption: CreditTransaction,
    amount: int | None = None,
    reason: str = "",
    idempotency_key: str = "",
    actor: User | None = None,
) -> CreditTransaction:
    """Give back all or part of a consumption, to the grants it drew from.

    Credits whose grant has expired since come back as a new refund grant that does not expire.
    Refunds of one consumption never add up to more than it took.
    """
    original = consumption
    if original.type != TransactionType.CONSUMPTION:
        raise ServiceError("not_refundable", "Only a consumption can be refunded.")
    key = _check_key(idempotency_key or f"refund:{original.code}")
    if amount is not None:
        _check_amount(amount)
    with transaction.atomic():
        CreditAccount.objects.select_for_update().filter(pk=original.account_id).first()
        earlier = _replay(CreditTransaction, account_id=original.account_id, key=key)
        if earlier is not None:
            return earlier
        refunds = CreditTransaction.objects.filter(refund_of=original)
        refundable = -original.amount - (refunds.aggregate(s=Sum("amount"))["s"] or 0)
        amount = refundable if amount is None else amount
        if amount <= 0 or amount > refundable:
            raise ServiceError(
                "refund_too_large",
                f"At most {refundable:,} credits of this consumption can still be refunded.",
                field="amount",
            )
        restored = dict(
            CreditAllocation.objects.filter(transaction__refund_of=original)
            .values_list("grant_id")
            .annotate(s=Sum("amount"))
            .values_list("grant_id", "s")
        )
        now = timezone.now()
        live = Q(grant__expires_at__isnull=True) | Q(grant__expires_at__gt=now)
        rooms = [
            (a.grant_id, -a.amount - restored.get(a.grant_id, 0))
            for a in original.allocations.filter(live).select_related("grant").order_by("-grant__priority")
        ]
        entry = _credit(
            account_id=original.account_id,
            amount=amount,
            type=TransactionType.REFUND,
            source=GrantSource.REFUND,
            idempotency_key=key,
            description=_text(reason, 200) or f"Refund of {original.description or 'a consumption'}",
            reference_type="transaction",
            reference_id=str(original.code),
            refund_of=original,
            actor=actor,
            restore_to=rooms,
        )
        # Credits that went back into a grant whose payment was refunded or is disputed are
        # revoked or held back again, so a refunded purchase never comes back to life.
        _claims_settle(
            account_id=original.account_id,
            grant_ids=[grant_id for grant_id, _ in rooms],
            context={"consumption_refund": str(entry.code)},
        )
        return entry


def credits_adjust(
    *,
    organization: Organization,
    amount: int,
    reason: str,
    actor: User,
    idempotency_key: str = "",
    ip_address: str | None = None,
) -> CreditTransaction:
    """A staff correction, positive or negative, recorded in the ledger and the audit log."""
    if not actor.is_staff:
        raise ServiceError("staff_only", "Only staff adjust balances.", status=403)
    reason = _text(reason, 200)
    if not reason:
        raise ServiceError("reason_required", "Say why the balance is adjusted.", field="reason")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount == 0:
        raise ServiceError("invalid_amount", "Give a non-zero whole number of credits.", field="amount")
    _check_amount(abs(amount))
    key = _check_key(idempotency_key or f"adjustment:{uuid.uuid4()}")
    account = credit_account_for(organization=organization)
    with transaction.atomic():
        if amount > 0:
            entry = _credit(
                account_id=account.pk,
                amount=amount,
                type=TransactionType.ADJUSTMENT,
                source=GrantSource.ADJUSTMENT,
                idempotency_key=key,
                description=reason,
                actor=actor,
            )
        else:
            entry = _debit(
                account_id=account.pk,
                amount=-amount,
                type=TransactionType.ADJUSTMENT,
                idempotency_key=key,
                description=reason,
                actor=actor,
            )
        if not entry.replayed:
            audit_record(
                organization=organization,
                action="credits.adjusted",
                actor=actor,
                target=str(entry.code),
                data={"amount": amount, "reason": reason, "balance_after": entry.balance_after},
                ip_address=ip_address,
            )
    return entry


# --- Reservations ---------------------------------------------------------------------------


def credit_reservation_create(
    *,
    organization: Organization,
    idempotency_key: str,
    amount: int | None = None,
    action: str = "",
    quantity: int = 1,
    ttl_seconds: int | None = None,
    description: str = "",
    reference_type: str = "",
    reference_id: str = "",
    metadata: dict | None = None,
    actor: User | None = None,
) -> CreditReservation:
    """Hold credits for an operation that will be confirmed or cancelled later."""
    key = _check_key(idempotency_key)
    quote = _resolve_amount(amount=amount, action=action, quantity=quantity)
    ttl = conf.reservation_ttl_seconds() if ttl_seconds is None else ttl_seconds
    if not isinstance(ttl, int) or not 1 <= ttl <= 24 * 3600:
        raise ServiceError(
            "invalid_ttl", "Hold credits for between 1 second and 24 hours.", field="ttl_seconds"
        )
    for _ in range(2):
        try:
            with transaction.atomic():
                account = _account_move(
                    organization_id=organization.pk, held=quote.credits, spend=quote.credits
                )
                if account is None:
                    raise _Refused
                return CreditReservation.objects.create(
                    account_id=account.pk,
                    amount=quote.credits,
                    action=quote.action,
                    quantity=quote.quantity if quote.action else None,
                    price=quote.price,
                    description=_text(description, 200),
                    reference_type=_text(reference_type, 40),
                    reference_id=_text(reference_id, 100),
                    idempotency_key=key,
                    actor=actor,
                    metadata=metadata or {},
                    expires_at=timezone.now() + timedelta(seconds=ttl),
                )
        except IntegrityError:
            original = _replay_for_org(CreditReservation, organization=organization, key=key)
            if original is None:
                raise
            _check_same_request(original, amount=quote.credits, action=quote.action)
            return original
        except _Refused:
            account = credit_account_for(organization=organization)
            original = _replay(CreditReservation, account_id=account.pk, key=key)
            if original is not None:
                _check_same_request(original, amount=quote.credits, action=quote.action)
                return original
            spendable = credits_spendable(account=account)
            if spendable < quote.credits:
                raise InsufficientCredits(
                    required=quote.credits, balance=account.balance, available=spendable
                ) from None
            # The account was created just now; the loop tries once more.
    raise InsufficientCredits(required=quote.credits, balance=0, available=0)


def _settled(reservation: CreditReservation, *, wanted: str) -> CreditReservation:
    """Answer a settle call on a reservation that is no longer held."""
    current = CreditReservation.objects.select_related("transaction").get(pk=reservation.pk)
    if current.status == wanted:
        current.replayed = True
        return current
    raise ServiceError(
        "reservation_closed",
        f"This reservation is already {current.get_status_display().lower()}.",
        status=409,
    )


def credit_reservation_confirm(
    *, reservation: CreditReservation, amount: int | None = None, quantity: int | None = None
) -> CreditReservation:
    """Consume `amount` (default: all) of the held credits and release the rest.

    `quantity` records the units really used when they differ from the estimate held.
    """
    amount = reservation.amount if amount is None else _check_amount(amount, allow_zero=True)
    if amount > reservation.amount:
        raise ServiceError(
            "amount_exceeds_hold",
            f"At most the {reservation.amount:,} credits held can be confirmed.",
            field="amount",
        )
    now = timezone.now()
    with transaction.atomic():
        claimed = CreditReservation.objects.filter(pk=reservation.pk, status=ReservationStatus.HELD).update(
            status=ReservationStatus.CONFIRMED, consumed=amount, settled_at=now
        )
        if not claimed:
            current = _settled(reservation, wanted=ReservationStatus.CONFIRMED)
            if current.consumed != amount:
                raise ServiceError(
                    "reservation_closed",
                    "This reservation was already confirmed for another amount.",
                    status=409,
                )
            return current
        locked = CreditAccount.objects.select_for_update().get(pk=reservation.account_id)
        fields = {
            "type": TransactionType.CONSUMPTION,
            "action": reservation.action,
            "quantity": reservation.quantity if quantity is None else quantity,
            "price": reservation.price,
            "description": reservation.description
            or (reservation.price.description if reservation.price else ""),
            "reference_type": reservation.reference_type,
            "reference_id": reservation.reference_id,
            "idempotency_key": f"reservation:{reservation.code}",
            "actor_id": reservation.actor_id,
            "metadata": {
                **reservation.metadata,
                "reservation": str(reservation.code),
                "held": reservation.amount,
            },
        }
        entry = None
        if amount and locked.frozen:
            # Credits are frozen: draw first (the hold may reach them, last), then move the
            # account with what was unfrozen, so its figures never disagree with its grants.
            draws, unfrozen = _grants_draw(account_id=locked.pk, amount=amount, set_aside=True)
            account = _account_move(
                account_id=locked.pk, held=-reservation.amount, balance=-amount, used=amount, frozen=-unfrozen
            )
            entry = CreditTransaction.objects.create(
                account_id=locked.pk, amount=-amount, balance_after=account.balance, **fields
            )
            CreditAllocation.objects.bulk_create(
                [CreditAllocation(transaction=entry, grant_id=g, amount=-t) for g, t in draws]
            )
        else:
            account = _account_move(
                account_id=locked.pk, held=-reservation.amount, balance=-amount, used=amount
            )
        if amount and entry is None:
            entry = _debit_entry(account=account, amount=amount, set_aside=True, **fields)
        if account.frozen:
            # The hold no longer covers anything: what a refund could not take yet goes now.
            _claims_settle(account_id=account.pk, context={"reservation": str(reservation.code)})
        if entry is not None:
            CreditReservation.objects.filter(pk=reservation.pk).update(transaction=entry)
            _after_debit(account, amount=amount, transaction_id=entry.pk)
    reservation.status, reservation.consumed, reservation.settled_at = (
        ReservationStatus.CONFIRMED,
        amount,
        now,
    )
    reservation.transaction = entry
    return reservation


def _release(reservation: CreditReservation, *, status: str, only_expired: bool = False) -> bool:
    now = timezone.now()
    with transaction.atomic():
        open_ = CreditReservation.objects.filter(pk=reservation.pk, status=ReservationStatus.HELD)
        if only_expired:
            open_ = open_.filter(expires_at__lte=now)
        if not open_.update(status=status, consumed=0, settled_at=now):
            return False
        account = _account_move(account_id=reservation.account_id, held=-reservation.amount)
        if account.frozen:
            # What a refund could not take while the hold covered it goes now.
            _claims_settle(account_id=account.pk, context={"reservation": str(reservation.code)})
    reservation.status, reservation.consumed, reservation.settled_at = status, 0, now
    return True


def credit_reservation_cancel(*, reservation: CreditReservation) -> CreditReservation:
    """Release every held credit. Cancelling twice is fine; cancelling a confirmed one is not."""
    if not _release(reservation, status=ReservationStatus.CANCELLED):
        return _settled(reservation, wanted=ReservationStatus.CANCELLED)
    return reservation


def credit_reservations_expire(*, now: datetime | None = None) -> int:
    """Release holds whose time ran out. Run by the periodic job; safe to run concurrently."""
    now = now or timezone.now()
    stale = CreditReservation.objects.filter(status=ReservationStatus.HELD, expires_at__lte=now)
    return sum(_release(r, status=ReservationStatus.EXPIRED, only_expired=True) for r in stale.iterator())


# --- Expiry ---------------------------------------------------------------------------------


def credit_grant_expire(*, grant: CreditGrant) -> CreditTransaction | None:
    """Write the expiry of what is left of one expired grant.

    Credits held by open reservations are not expired from under them: only what exceeds the
    holds goes now, and the periodic job takes the rest once the holds are settled.
    """
    with transaction.atomic():
        account = CreditAccount.objects.select_for_update().get(pk=grant.account_id)
        grant = CreditGrant.objects.get(pk=grant.pk)
        if not grant.is_expired() or grant.remaining <= 0:
            return None
        # Frozen credits are not this expiry's to take; holds keep what backs them.
        take = min(grant.drawable, max(0, account.available))
        if take <= 0:
            return None
        moved = _account_move(account_id=account.pk, balance=-take)
        CreditGrant.objects.filter(pk=grant.pk).update(remaining=F("remaining") - take)
        entry = CreditTransaction.objects.create(
            account_id=account.pk,
            type=TransactionType.EXPIRY,
            amount=-take,
            balance_after=moved.balance,
            description=f"Expired: {grant.description or grant.get_source_display()}",
            reference_type="grant",
            reference_id=str(grant.code),
            # Under the account lock `remaining` only shrinks, so the key is unique per expiry.
            idempotency_key=f"expiry:{grant.code}:{grant.remaining}",
        )
        CreditAllocation.objects.create(transaction=entry, grant=grant, amount=-take)
        _after_debit(moved, amount=take, transaction_id=entry.pk)
    return entry


def credit_grants_expire(*, now: datetime | None = None) -> int:
    """Expire every grant past its date. Run by the periodic job; safe to run concurrently."""
    now = now or timezone.now()
    due = CreditGrant.objects.filter(expires_at__lte=now, remaining__gt=0).order_by("expires_at")
    return sum(credit_grant_expire(grant=g) is not None for g in due.iterator())


# --- Alerts ---------------------------------------------------------------------------------


def _billing_contacts(organization: Organization) -> list[str]:
    if organization.billing_email:
        return [organization.billing_email]
    return list(
        organization.memberships.filter(role__in=[Role.OWNER, Role.BILLING])
        .values_list("user__email", flat=True)
        .order_by("user__email")
    )


def credits_low_balance_alert_send(*, account_id: int, transaction_id: int) -> bool:
    """Email the billing contacts once for the crossing that `transaction_id` caused.

    The claim (a conditional update of `low_balance_alerted_at`) comes first, so a task that is
    delivered twice sends one email; a later crossing is newer than the claim and alerts again.
    """
    entry = CreditTransaction.objects.filter(pk=transaction_id, account_id=account_id).first()
    if entry is None:
        return False
    claimed = CreditAccount.objects.filter(
        Q(low_balance_alerted_at__isnull=True) | Q(low_balance_alerted_at__lt=entry.created_at),
        pk=account_id,
    ).update(low_balance_alerted_at=timezone.now())
    if not claimed:
        return False
    account = CreditAccount.objects.select_related("organization").get(pk=account_id)
    recipients = _billing_contacts(account.organization)
    if not recipients:
        return False
    context = {
        "account": account,
        "organization": account.organization,
        "runway": selectors.runway_days(account),
        "url": settings.SITE_URL + reverse("credits", args=[account.organization.slug]),
    }
    send_mail(
        subject=f"{account.organization.name} is running low on credits",
        message=render_to_string("credits/email/low_balance.txt", context),
        from_email=None,
        recipient_list=recipients,
    )
    return True


# --- Purchases ----------------------------------------------------------------------------


def credit_package_get(*, code: str) -> CreditPackage:
    """The active package named `code`, or a clear error naming the field."""
    package = CreditPackage.objects.filter(code=(code or "").strip(), is_active=True).first()
    if package is None:
        raise ServiceError("unknown_package", "Choose one of the packages on sale.", field="package")
    return package


def credit_purchase_start(
    *, organization: Organization, package: CreditPackage, actor: User | None
) -> tuple[CreditPurchase, str]:
    """Open a Stripe Checkout for `package`; returns the purchase and the URL to send the buyer to.

    The purchase is committed first, with the package as it is now, so the webhook grants what
    was shown and paid for even if staff change the package meanwhile. Stripe is called after the
    commit, with a key derived from the purchase, so a retried call opens the same session.
    """
    if not package.is_active:
        raise ServiceError("unknown_package", "Choose one of the packages on sale.", field="package")
    if package.unit_amount <= 0:
        raise ServiceError(
            "package_not_purchasable", f"{package.name} cannot be bought online.", field="package"
        )
    account = credit_account_for(organization=organization)
    purchase = CreditPurchase.objects.create(
        account=account,
        package=package,
        credits=package.credits,
        bonus_credits=package.bonus_credits,
        amount=package.unit_amount,
        currency=package.currency,
        actor=actor,
    )
    page = settings.SITE_URL + reverse("credits", args=[organization.slug])
    metadata = {
        "tally_org_id": str(organization.pk),
        "tally_org": organization.slug,
        "tally_credit_purchase": str(purchase.code),
        "tally_package": package.code,
    }
    session = services_payments.payment_checkout_start(
        organization=organization,
        price=services_payments.OneTimePrice(
            key=f"credits_{package.code}",
            name=package.name,
            description=package.description,
            unit_amount=purchase.amount,
            currency=purchase.currency,
        ),
        metadata=metadata,
        success_url=page + f"?purchase=complete&code={purchase.code}",
        cancel_url=page + "?purchase=cancelled",
        idempotency_key=f"tally-credit-purchase-{purchase.code}",
    )
    CreditPurchase.objects.filter(pk=purchase.pk, checkout_session_id__isnull=True).update(
        checkout_session_id=session.id
    )
    CreditPackage.objects.filter(pk=package.pk).exclude(stripe_price_id=session.price_id).update(
        stripe_price_id=session.price_id
    )
    purchase.checkout_session_id = session.id
    audit_record(
        organization=organization,
        action="credits.purchase_started",
        actor=actor,
        target=package.code,
        data={"session": session.id, "credits": purchase.total_credits, "amount": purchase.amount},
    )
    return purchase, session.url


def credit_purchase_complete(
    *, purchase_code: str, session_id: str, payment_intent_id: str = ""
) -> CreditPurchase | None:
    """Grant a paid purchase's credits: once per Checkout Session, however often the webhook comes.

    Billing calls this for `checkout.session.completed` after re-reading the session from Stripe
    and seeing it paid. The grant's idempotency key is the session id, which the database keeps
    unique per account; the purchase moves from pending to completed in the same transaction.
    """
    purchase = _purchase_of_session(purchase_code, session_id)
    if purchase is None:
        return None
    with transaction.atomic():
        entry = _credit(
            account_id=purchase.account_id,
            amount=purchase.total_credits,
            type=TransactionType.PURCHASE,
            source=GrantSource.PURCHASE,
            idempotency_key=f"purchase:{session_id}",
            description=purchase.package.name,
            reference_type="checkout_session",
            reference_id=session_id,
            metadata={
                "credits": purchase.credits,
                "bonus_credits": purchase.bonus_credits,
                "amount": purchase.amount,
                "currency": purchase.currency,
            },
            actor=purchase.actor,
        )
        # Stripe says it is paid (re-read by billing): whatever Tally thought before, it is bought.
        completed = (
            CreditPurchase.objects.filter(pk=purchase.pk)
            .exclude(status=PurchaseStatus.COMPLETED)
            .update(
                status=PurchaseStatus.COMPLETED,
                processing=False,
                transaction=entry,
                checkout_session_id=session_id,
                payment_intent_id=payment_intent_id or None,
                completed_at=timezone.now(),
            )
        )
        if completed:
            audit_record(
                organization=purchase.account.organization,
                action="credits.purchased",
                actor=purchase.actor,
                target=purchase.package.code,
                data={"session": session_id, "credits": purchase.total_credits, "amount": purchase.amount},
            )
    purchase.refresh_from_db()
    if purchase.payment_intent_id:
        _disputes_apply(payment_intent_id=purchase.payment_intent_id)  # one may have come first
    return purchase


def _purchase_of_session(purchase_code: str, session_id: str) -> CreditPurchase | None:
    try:
        purchase = (
            CreditPurchase.objects.select_related("package", "account__organization")
            .filter(code=purchase_code)
            .first()
        )
    except ValidationError:
        return None  # not a purchase code of ours
    if purchase is None or purchase.checkout_session_id not in (None, session_id):
        return None
    return purchase


def credit_purchase_processing(*, purchase_code: str, session_id: str) -> CreditPurchase | None:
    """The buyer paid with a delayed method (a bank debit): nothing is granted until the bank
    has paid; the purchase says it is waiting for that."""
    purchase = _purchase_of_session(purchase_code, session_id)
    if purchase is None:
        return None
    CreditPurchase.objects.filter(pk=purchase.pk, status=PurchaseStatus.PENDING, processing=False).update(
        processing=True, checkout_session_id=session_id
    )
    purchase.refresh_from_db()
    return purchase


def credit_purchase_end(
    *, purchase_code: str, session_id: str, status: str, failure_message: str = ""
) -> CreditPurchase | None:
    """A pending purchase that will never be paid: its checkout expired (abandoned) or its
    delayed payment was refused (failed, with the bank's reason). Grants nothing; only a pending
    purchase moves, once, so a replayed or late event changes nothing."""
    if status not in (PurchaseStatus.ABANDONED, PurchaseStatus.FAILED):
        raise ValueError(f"not an end of a purchase: {status}")
    purchase = _purchase_of_session(purchase_code, session_id)
    if purchase is None:
        return None
    ended = CreditPurchase.objects.filter(pk=purchase.pk, status=PurchaseStatus.PENDING).update(
        status=status,
        processing=False,
        failure_message=failure_message[:500],
        checkout_session_id=session_id,
        ended_at=timezone.now(),
    )
    if ended:
        audit_record(
            organization=purchase.account.organization,
            action=f"credits.purchase_{status}",
            actor=purchase.actor,
            target=purchase.package.code,
            data={"session": session_id, "reason": failure_message},
        )
    purchase.refresh_from_db()
    return purchase


def credit_purchase_refunded(*, payment_intent_id: str, amount_refunded: int) -> list[CreditTransaction]:
    """A payment for credits was refunded (in full or in part): take back what is left of them.

    Billing calls this for every `charge.refunded`; a payment that bought no credits is ignored.
    The credits revoked are proportional to the money refunded, rounded up. What is still in the
    grant is taken at once, except what open reservations hold: that is owed, frozen, and taken
    as soon as the holds settle (credits already spent stay spent). `amount_refunded` is the
    charge's total so far, so a replayed or late event takes only what is still owed.
    """
    if not payment_intent_id:
        return []
    purchase = CreditPurchase.objects.filter(payment_intent_id=payment_intent_id).first()
    model = CreditPurchase
    if purchase is not None:
        paid, credits, entry_id, row = (
            purchase.amount,
            purchase.total_credits,
            purchase.transaction_id,
            purchase,
        )
    else:
        row = CreditRecharge.objects.filter(payment_intent_id=payment_intent_id).first()
        if row is None:
            return []
        model = CreditRecharge
        paid, credits, entry_id = row.amount, row.credits, row.transaction_id
    refunded = min(max(amount_refunded, 0), paid)
    model.objects.filter(pk=row.pk, amount_refunded__lt=refunded).update(amount_refunded=refunded)
    if entry_id is None or paid <= 0:
        return []
    grant = _grant_of(entry_id)
    if grant is None:
        return []  # every credit of it repaid an overdraft: nothing left to take
    target = -(-credits * refunded // paid)  # ceiling division: integers only
    return credit_grant_refunded(grant=grant, credits=target, context={"amount_refunded": refunded})


def _grant_of(entry_id: int) -> CreditGrant | None:
    """The grant a purchase's ledger line created (none if it all repaid an overdraft)."""
    return CreditGrant.objects.filter(allocations__transaction_id=entry_id, allocations__amount__gt=0).first()


def credit_grant_refunded(
    *, grant: CreditGrant, credits: int, context: dict | None = None
) -> list[CreditTransaction]:
    """`credits` of `grant` (in all, so far) were paid with money that went back: revoke them.

    A level, not an increment: calling it again with the same figure changes nothing.
    """
    credits = min(_check_amount(credits, field="credits", allow_zero=True), grant.amount)
    with transaction.atomic():
        CreditAccount.objects.select_for_update().filter(pk=grant.account_id).first()
        CreditGrant.objects.filter(pk=grant.pk, revoked__lt=credits).update(revoked=credits)
        return _claims_settle(account_id=grant.account_id, grant_ids=[grant.pk], context=context)


def _claims_settle(
    *, account_id: int, grant_ids: list[int] | None = None, context: dict | None = None
) -> list[CreditTransaction]:
    """Bring the grants that refunds or disputes claim in line with those claims, and take back
    what can be taken. Call inside a transaction, with the account row locked.

    For each grant: of its revoked credits, those not taken back yet and still in it are owed;
    of what is left, an open dispute's credits are disputed; both are frozen (never drawn by
    ordinary spending). Owed credits are taken as far as open holds allow. Everything here is
    recomputed from the grant, its clawbacks and its disputes, so running it again is harmless,
    and credits that come back into a revoked grant (a refunded consumption) are taken again.
    """
    grants = (
        CreditGrant.objects.filter(account_id=account_id)
        .filter(Q(revoked__gt=0) | Q(owed__gt=0) | Q(disputed__gt=0) | Q(disputes__status=DisputeStatus.OPEN))
        .distinct()
        .order_by("pk")
    )
    if grant_ids is not None:
        grants = grants.filter(pk__in=grant_ids)
    entries = []
    for grant in grants:
        clawed = -(
            CreditAllocation.objects.filter(
                grant=grant, transaction__type=TransactionType.CLAWBACK
            ).aggregate(s=Sum("amount"))["s"]
            or 0
        )
        contested = (
            CreditDispute.objects.filter(grant=grant, status=DisputeStatus.OPEN).aggregate(s=Sum("credits"))[
                "s"
            ]
            or 0
        )
        owed = max(0, min(grant.revoked - clawed, grant.remaining))
        disputed = max(0, min(contested, grant.remaining - owed))
        account = CreditAccount.objects.get(pk=account_id)
        take = min(owed, max(0, account.balance - account.held))
        frozen = (owed - take + disputed) - (grant.owed + grant.disputed)
        if take == 0 and owed == grant.owed and disputed == grant.disputed:
            continue
        CreditGrant.objects.filter(pk=grant.pk).update(
            remaining=F("remaining") - take, owed=owed - take, disputed=disputed
        )
        moved = _account_move(account_id=account_id, balance=-take, purchased=-take, frozen=frozen)
        if take <= 0:
            continue
        source = CreditTransaction.objects.filter(
            allocations__grant=grant, allocations__amount__gt=0
        ).order_by("pk")
        source = source.first()
        not_recovered = grant.revoked - clawed - owed
        entry = CreditTransaction.objects.create(
            account_id=account_id,
            type=TransactionType.CLAWBACK,
            amount=-take,
            balance_after=moved.balance,
            description=f"Refunded: {(source.description if source else '') or 'a purchase'}",
            reference_type="transaction" if source else "grant",
            reference_id=str(source.code if source else grant.code),
            # Clawbacks of a grant only ever add up: the running total names each one once.
            idempotency_key=f"clawback:{grant.code}:{clawed + take}",
            refund_of=source,
            metadata={**(context or {}), "not_recovered": not_recovered},
        )
        CreditAllocation.objects.create(transaction=entry, grant=grant, amount=-take)
        audit_record(
            organization=Organization.objects.get(pk=moved.organization_id),
            action="credits.clawed_back",
            target=str(source.code if source else grant.code),
            data={
                **(context or {}),
                "credits": take,
                "still_owed": owed - take,
                "not_recovered": not_recovered,
            },
        )
        entries.append(entry)
    return entries


# --- Disputes -------------------------------------------------------------------------------


def credit_dispute_record(
    *,
    dispute_id: str,
    payment_intent_id: str,
    amount: int,
    currency: str,
    stripe_status: str,
    reason: str = "",
) -> CreditDispute | None:
    """A payment was disputed, or its dispute closed: hold back, give back or take back the
    credits it bought.

    Billing calls this for `charge.dispute.created` and `.closed` with the dispute re-read from
    Stripe. Every dispute is recorded (the purchase it concerns may not be completed yet: it is
    applied when it is); one that bought no credits changes nothing else. While open, the
    credits the disputed amount bought are frozen; won, they are released; lost, revoked and
    taken back like a refund's (owed while holds need them). Safe to run again, in any order.
    """
    if not dispute_id or not payment_intent_id:
        return None
    try:
        with transaction.atomic():
            record, _ = CreditDispute.objects.get_or_create(
                stripe_dispute_id=dispute_id,
                defaults={
                    "payment_intent_id": payment_intent_id,
                    "amount": max(amount, 0),
                    "currency": currency,
                    "reason": _text(reason, 60),
                    "stripe_status": stripe_status,
                },
            )
    except IntegrityError:
        record = CreditDispute.objects.get(stripe_dispute_id=dispute_id)
    # Statuses only move from open to closed: an older event never reopens a closed dispute.
    if stripe_status in ("won", "lost", "warning_closed"):
        CreditDispute.objects.filter(pk=record.pk).exclude(
            stripe_status__in=["won", "lost", "warning_closed"]
        ).update(stripe_status=stripe_status)
    _disputes_apply(payment_intent_id=payment_intent_id)
    return CreditDispute.objects.get(pk=record.pk)


def _disputes_apply(*, payment_intent_id: str) -> None:
    """Apply what Stripe says of the disputes of one payment to the grant it bought."""
    for dispute_id in CreditDispute.objects.filter(payment_intent_id=payment_intent_id).values_list(
        "pk", flat=True
    ):
        _dispute_apply(dispute_id)


def _dispute_apply(dispute_pk: int) -> None:
    dispute = CreditDispute.objects.get(pk=dispute_pk)
    if dispute.grant_id is None:
        bought = CreditPurchase.objects.filter(payment_intent_id=dispute.payment_intent_id).first()
        if bought is not None:
            paid, credits, entry_id, account_id = (
                bought.amount,
                bought.total_credits,
                bought.transaction_id,
                bought.account_id,
            )
        elif (
            bought := CreditRecharge.objects.filter(payment_intent_id=dispute.payment_intent_id).first()
        ) is not None:
            paid, credits, entry_id, account_id = (
                bought.amount,
                bought.credits,
                bought.transaction_id,
                bought.account_id,
            )
        elif (allowance := _allowance_paid_by(dispute)) is not None:
            paid, entry = allowance
            credits, entry_id, account_id = entry.amount, entry.pk, entry.account_id
        else:
            return  # not a payment for credits, or not completed (or granted) yet
        grant = _grant_of(entry_id) if entry_id else None
        if grant is None or paid <= 0:
            return
        share = -(-credits * min(dispute.amount, paid) // paid)  # ceiling division
        CreditDispute.objects.filter(pk=dispute.pk, grant__isnull=True).update(
            grant=grant, account_id=account_id, credits=min(share, grant.amount)
        )
    wanted = {"won": DisputeStatus.WON, "warning_closed": DisputeStatus.WON, "lost": DisputeStatus.LOST}.get(
        dispute.stripe_status, DisputeStatus.OPEN
    )
    with transaction.atomic():
        dispute = CreditDispute.objects.select_related("grant", "account__organization").get(pk=dispute_pk)
        CreditAccount.objects.select_for_update().filter(pk=dispute.account_id).first()
        grant = CreditGrant.objects.get(pk=dispute.grant_id)
        if wanted != DisputeStatus.OPEN and dispute.status == DisputeStatus.OPEN:
            CreditDispute.objects.filter(pk=dispute.pk, status=DisputeStatus.OPEN).update(
                status=wanted, closed_at=timezone.now()
            )
            if wanted == DisputeStatus.LOST:
                # The money is gone as surely as a refund's: the credits are revoked with it.
                CreditGrant.objects.filter(pk=grant.pk).update(
                    revoked=Least(F("revoked") + dispute.credits, F("amount"))
                )
            audit_record(
                organization=dispute.account.organization,
                action=f"credits.dispute_{wanted}",
                target=dispute.stripe_dispute_id,
                data={"credits": dispute.credits, "amount": dispute.amount},
            )
        elif dispute.status == DisputeStatus.OPEN and not grant.disputed:
            audit_record(
                organization=dispute.account.organization,
                action="credits.dispute_opened",
                target=dispute.stripe_dispute_id,
                data={"credits": dispute.credits, "amount": dispute.amount},
            )
        _claims_settle(
            account_id=dispute.account_id,
            grant_ids=[grant.pk],
            context={"dispute": dispute.stripe_dispute_id},
        )


def _allowance_paid_by(dispute: CreditDispute) -> tuple[int, CreditTransaction] | None:
    """The plan allowance that a disputed subscription payment paid for: the amount paid and the
    allowance's ledger line, once billing has recorded the payment and the period's grant exists."""
    payment = Payment.objects.filter(disputes__stripe_dispute_id=dispute.stripe_dispute_id).first()
    if payment is None or not payment.stripe_subscription_id or payment.period_start is None:
        return None
    entries = CreditTransaction.objects.filter(
        type=TransactionType.ALLOWANCE,
        reference_id=payment.stripe_subscription_id,
        idempotency_key__startswith="allowance:",
    ).order_by("pk")
    start, end = payment.period_start.timestamp(), (payment.period_end or payment.period_start).timestamp()
    for entry in entries:
        parsed = allowance_key_parse(entry.idempotency_key)
        if (
            parsed
            and parsed[0] == payment.stripe_subscription_id
            and start <= parsed[1] < max(end, start + 1)
        ):
            return payment.amount_paid, entry
    return None


def credit_allowance_disputes_apply(*, subscription_id: str) -> None:
    """A period's allowance was just granted: apply the disputes of the subscription's payments
    that were heard of before it (a dispute can come before the period's grant)."""
    disputed = PaymentDispute.objects.filter(payment__stripe_subscription_id=subscription_id).values_list(
        "stripe_dispute_id", flat=True
    )
    for dispute_id in CreditDispute.objects.filter(
        stripe_dispute_id__in=list(disputed), grant__isnull=True
    ).values_list("pk", flat=True):
        _dispute_apply(dispute_id)


# --- Auto-recharge --------------------------------------------------------------------------

# A pending recharge younger than this is being charged right now: leave it alone. Older, its
# worker died between the commit and the record, and it is charged again under the same key.
RECHARGE_IN_FLIGHT = timedelta(minutes=5)
# Stripe keeps an idempotency key for 24 hours: past this, a retry could charge a second time,
# so the recharge is closed as abandoned instead.
RECHARGE_RESUME_WINDOW = timedelta(hours=12)


def credit_recharge_charge(*, recharge: CreditRecharge) -> CreditRecharge:
    """Charge the saved card off-session for a pending `recharge`, and record the outcome.

    Called after the pending row is committed and never inside a transaction. The key
    `recharge-<code>` makes a retry (a redelivered task, a resumed recharge) return the first
    PaymentIntent instead of charging again. Errors other than a declined card (network, Stripe
    unavailable) propagate and leave the recharge pending, for the task to retry.
    """
    account = CreditAccount.objects.select_related("organization").get(pk=recharge.account_id)
    try:
        result = services_payments.payment_charge_saved_card(
            organization=account.organization,
            amount=recharge.amount,
            currency=recharge.currency,
            description=f"Credits auto-recharge: {recharge.package.name}",
            metadata={"tally_org_id": str(account.organization_id), "tally_recharge": str(recharge.code)},
            idempotency_key=f"recharge-{recharge.code}",
        )
    except services_payments.PaymentUnavailable as error:
        return credit_recharge_fail(recharge=recharge, code=error.code, message=error.message)
    if result.succeeded:
        return credit_recharge_succeed(recharge=recharge, payment_intent_id=result.payment_intent_id)
    return credit_recharge_fail(
        recharge=recharge,
        code=result.failure_code,
        message=result.failure_message,
        payment_intent_id=result.payment_intent_id,
    )


def credit_auto_recharge_start(*, account_id: int) -> CreditRecharge | None:
    """Start one recharge for an account that fell below its threshold, within its monthly limit.

    The account row is locked while the month's spending is summed and the pending row written,
    so two triggers cannot both pass the limit; the database also refuses a second pending row
    per account, so there is never more than one recharge in flight. The card is charged after
    that commit. A pending recharge whose worker died is charged again with its own idempotency
    key, which Stripe answers with the first outcome.
    """
    month_start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    with transaction.atomic():
        account = (
            CreditAccount.objects.select_for_update(of=("self",))
            .select_related("auto_recharge_package")
            .get(pk=account_id)
        )
        in_flight = CreditRecharge.objects.filter(account=account, status=RechargeStatus.PENDING).first()
        package = account.auto_recharge_package
        if in_flight is None and (
            not account.auto_recharge_enabled
            or package is None
            or account.balance >= account.auto_recharge_threshold
        ):
            return None
        if in_flight is None:
            spent = (
                CreditRecharge.objects.filter(
                    account=account, created_at__gte=month_start, status=RechargeStatus.SUCCEEDED
                ).aggregate(s=Sum("amount"))["s"]
                or 0
            )
            snapshot = {
                "account": account,
                "package": package,
                "credits": package.total_credits,
                "amount": package.unit_amount,
                "currency": package.currency,
            }
            if spent + package.unit_amount > account.auto_recharge_monthly_limit:
                return CreditRecharge.objects.create(
                    **snapshot,
                    status=RechargeStatus.SKIPPED,
                    failure_code="monthly_limit",
                    failure_message="This month's auto-recharge limit is reached.",
                    settled_at=timezone.now(),
                )
            recharge = CreditRecharge.objects.create(**snapshot)
    if in_flight is None:
        return credit_recharge_charge(recharge=recharge)  # after the commit, never inside it
    age = timezone.now() - in_flight.created_at
    if age < RECHARGE_IN_FLIGHT:
        return None  # another worker is charging it
    if age > RECHARGE_RESUME_WINDOW:
        return credit_recharge_fail(
            recharge=in_flight,
            code="abandoned",
            message="The recharge was interrupted; check the payments in Stripe before retrying.",
        )
    return credit_recharge_charge(recharge=in_flight)


def credit_recharges_resume() -> int:
    """Charge (or close) every recharge left pending past the in-flight window. Periodic."""
    stale = CreditRecharge.objects.filter(
        status=RechargeStatus.PENDING, created_at__lt=timezone.now() - RECHARGE_IN_FLIGHT
    )
    return sum(
        credit_auto_recharge_start(account_id=a) is not None
        for a in stale.values_list("account_id", flat=True)
    )


def credit_recharge_succeed(*, recharge: CreditRecharge, payment_intent_id: str = "") -> CreditRecharge:
    """The payment went through: grant the package's credits (once, whatever the retries)."""
    with transaction.atomic():
        entry = _credit(
            account_id=recharge.account_id,
            amount=recharge.credits,
            type=TransactionType.PURCHASE,
            source=GrantSource.PURCHASE,
            idempotency_key=f"recharge:{recharge.code}",
            description=f"Auto-recharge: {recharge.package.name}",
            reference_type="recharge",
            reference_id=str(recharge.code),
        )
        CreditRecharge.objects.filter(pk=recharge.pk, status=RechargeStatus.PENDING).update(
            status=RechargeStatus.SUCCEEDED,
            transaction=entry,
            payment_intent_id=payment_intent_id or recharge.payment_intent_id,
            settled_at=timezone.now(),
        )
    recharge.refresh_from_db()
    if recharge.payment_intent_id:
        _disputes_apply(payment_intent_id=recharge.payment_intent_id)
    return recharge


def credit_recharge_fail(
    *, recharge: CreditRecharge, code: str, message: str = "", payment_intent_id: str = ""
) -> CreditRecharge:
    """The charge did not go through: turn auto-recharge off (it would only fail again), record
    it in the audit log and email the billing contacts once."""
    from credits import tasks

    with transaction.atomic():
        failed = CreditRecharge.objects.filter(pk=recharge.pk, status=RechargeStatus.PENDING).update(
            status=RechargeStatus.FAILED,
            failure_code=code[:60],
            failure_message=message[:255],
            payment_intent_id=payment_intent_id or recharge.payment_intent_id,
            settled_at=timezone.now(),
        )
        if failed:
            account = CreditAccount.objects.select_related("organization").get(pk=recharge.account_id)
            CreditAccount.objects.filter(pk=account.pk).update(auto_recharge_enabled=False)
            audit_record(
                organization=account.organization,
                action="credits.auto_recharge_failed",
                target=str(recharge.code),
                data={"code": code, "message": message[:255], "amount": recharge.amount},
            )
            tasks.send_recharge_failed_alert.delay_on_commit(recharge.pk)
    recharge.refresh_from_db()
    return recharge


def credit_recharge_failed_alert_send(*, recharge_id: int) -> bool:
    """Tell the billing contacts that a recharge failed and auto-recharge is now off."""
    recharge = (
        CreditRecharge.objects.select_related("account__organization", "package")
        .filter(pk=recharge_id, status=RechargeStatus.FAILED)
        .first()
    )
    if recharge is None:
        return False
    organization = recharge.account.organization
    recipients = _billing_contacts(organization)
    if not recipients:
        return False
    context = {
        "recharge": recharge,
        "organization": organization,
        "url": settings.SITE_URL + reverse("credits", args=[organization.slug]),
    }
    send_mail(
        subject=f"{organization.name}: credits auto-recharge failed and is now off",
        message=render_to_string("credits/email/recharge_failed.txt", context),
        from_email=None,
        recipient_list=recipients,
    )
    return True
