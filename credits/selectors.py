"""Reads: history, usage, runway and the reconciliation of balances against the ledger."""

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.core import signing
from django.db.models import F, Sum
from django.utils import timezone

from credits import conf
from credits.models import (
    CreditAccount,
    CreditAllocation,
    CreditGrant,
    CreditPackage,
    CreditPrice,
    CreditPurchase,
    CreditRecharge,
    CreditReservation,
    CreditTransaction,
    CreditUsageDay,
    PurchaseStatus,
    ReservationStatus,
    TransactionType,
)

CURSOR_SALT = "credits.transactions"


PURCHASE_OUTCOME_SHOWN = timedelta(days=1)


def purchase_to_show(account: CreditAccount, *, code: str = "") -> CreditPurchase | None:
    """The purchase the credits page reports on: the one Checkout sent the buyer back with
    (`code`), else the latest one if it is still waiting for a bank debit, or expired or failed
    in the last day (so the person sees why no credits came)."""
    purchases = CreditPurchase.objects.filter(organization_id=account.organization_id).select_related(
        "package"
    )
    if code:
        try:
            return purchases.filter(code=uuid.UUID(code)).first()
        except ValueError:
            return None
    latest = purchases.first()
    if latest is None:
        return None
    if latest.status == PurchaseStatus.PENDING and latest.processing:
        return latest
    ended = latest.status in (PurchaseStatus.ABANDONED, PurchaseStatus.FAILED)
    if ended and latest.ended_at and latest.ended_at > timezone.now() - PURCHASE_OUTCOME_SHOWN:
        return latest
    return None


def last_refill_of(account: CreditAccount) -> int | None:
    """Credits of the newest purchase or allowance (what a percentage threshold counts from)."""
    return (
        CreditTransaction.objects.filter(
            organization_id=account.organization_id,
            type__in=[TransactionType.PURCHASE, TransactionType.ALLOWANCE],
        )
        .order_by("-id")
        .values_list("amount", flat=True)
        .first()
    )


def current_prices(*, actions=None) -> list[CreditPrice]:
    """What each action costs now: its newest version in effect (what `credit_price_current`
    charges), by action. An action of the defaults that has no version yet shows the version 1
    it will get, unsaved: a page that lists prices writes nothing."""
    rows = CreditPrice.objects.order_by("action", "-version")
    if actions is not None:
        actions = list(actions)
        rows = rows.filter(action__in=actions)
    now = timezone.now()
    current: dict[str, CreditPrice | None] = {}
    for price in rows:
        if current.get(price.action) is None:
            # None: the action has versions, none in effect yet (it cannot be charged).
            current[price.action] = price if price.effective_from <= now else None
    for action, credits, unit, unit_size, description in conf.DEFAULT_PRICES:
        if action not in current and (actions is None or action in actions):
            current[action] = CreditPrice(
                action=action,
                version=1,
                credits=credits,
                unit=unit,
                unit_size=unit_size,
                description=description,
            )
    order = actions if actions is not None else sorted(current)
    return [current[a] for a in order if current.get(a) is not None]


def active_packages():
    return CreditPackage.objects.filter(is_active=True)


def transactions_of(
    account: CreditAccount,
    *,
    type: str = "",
    since: date | None = None,
    until: date | None = None,
    reference_type: str = "",
    reference_id: str = "",
):
    """The account's ledger, newest first, narrowed by the filters given. Dates are inclusive."""
    rows = CreditTransaction.objects.filter(organization_id=account.organization_id).select_related(
        "price", "actor"
    )
    if type:
        rows = rows.filter(type=type)
    # Ranges of the column itself, which its indexes serve (a cast to a date serves none).
    if since:
        rows = rows.filter(created_at__gte=datetime.combine(since, time.min, tzinfo=UTC))
    if until:
        rows = rows.filter(created_at__lt=datetime.combine(until + timedelta(days=1), time.min, tzinfo=UTC))
    if reference_type:
        rows = rows.filter(reference_type=reference_type)
    if reference_id:
        rows = rows.filter(reference_id=reference_id)
    return rows.order_by("-pk")


def page_after(rows, *, cursor: str = "", limit: int = 50) -> tuple[list, str]:
    """One page of `rows` (ordered newest first) after `cursor`, and the cursor of the next page.

    Cursors are signed, so they cannot be forged to walk another position, and stay stable
    while new lines are added at the top. They carry no signing time: the same position is
    always the same link.
    """
    if cursor:
        try:
            rows = rows.filter(pk__lt=int(_cursor_position(cursor)))
        except (signing.BadSignature, TypeError, ValueError):
            rows = rows.none()
    page = list(rows[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return page, signing.Signer(salt=CURSOR_SALT).sign_object(page[-1].pk) if more else ""


def _cursor_position(cursor: str):
    if cursor.count(":") == 2:  # the older, time-stamped form
        return signing.loads(cursor, salt=CURSOR_SALT)
    return signing.Signer(salt=CURSOR_SALT).unsign_object(cursor)


def runway_days(account: CreditAccount) -> int | None:
    """Whole days the balance lasts at the last seven days' average burn (today and the six
    before, from the daily rollup); None without usage."""
    since = timezone.now().astimezone(UTC).date() - timedelta(days=6)
    used = (
        CreditUsageDay.objects.filter(organization_id=account.organization_id, day__gte=since).aggregate(
            s=Sum("credits")
        )["s"]
        or 0
    )
    if used <= 0:
        return None
    return max(account.balance, 0) * 7 // used


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    percent: int


def _bars(pairs: list[tuple[str, int]]) -> list[Bar]:
    top = max((v for _, v in pairs), default=0)
    return [Bar(label, value, value * 100 // top if top else 0) for label, value in pairs]


def _usage_days(account: CreditAccount, days: int):
    # UTC days, as the rollup is kept; a few rows a day, however many consumptions.
    start = timezone.now().astimezone(UTC).date() - timedelta(days=days - 1)
    return start, CreditUsageDay.objects.filter(organization_id=account.organization_id, day__gte=start)


def usage_by_day(account: CreditAccount, *, days: int = 30) -> list[Bar]:
    """Credits consumed per day for the last `days` days, including the days with none."""
    start, rows = _usage_days(account, days)
    totals = dict(rows.values_list("day").annotate(s=Sum("credits")).values_list("day", "s"))
    return _bars(
        [((start + timedelta(d)).isoformat(), totals.get(start + timedelta(d)) or 0) for d in range(days)]
    )


def usage_by_action(account: CreditAccount, *, days: int = 30) -> list[Bar]:
    _, rows = _usage_days(account, days)
    rows = rows.values_list("action").annotate(s=Sum("credits")).order_by("-s").values_list("action", "s")
    return _bars([(action or "other", total) for action, total in rows])


@dataclass(frozen=True)
class UsageOverview:
    runway: int | None
    by_day: list[Bar]
    by_action: list[Bar]


def usage_overview(account: CreditAccount, *, days: int = 30) -> UsageOverview:
    """The credits page's figures (`runway_days`, `usage_by_day`, `usage_by_action`) from one
    read of the rollup: a few rows a day, however many consumptions."""
    start, rows = _usage_days(account, max(days, 7))
    rows = list(rows.values_list("day", "action", "credits"))
    week = start + timedelta(days=max(days, 7) - 7)
    used = sum(c for day, _, c in rows if day >= week)
    runway = max(account.balance, 0) * 7 // used if used > 0 else None
    first = start + timedelta(days=max(days, 7) - days)
    per_day: dict[date, int] = {}
    per_action: dict[str, int] = {}
    for day, action, credits in rows:
        if day >= first:
            per_day[day] = per_day.get(day, 0) + credits
            per_action[action] = per_action.get(action, 0) + credits
    by_day = _bars(
        [((first + timedelta(d)).isoformat(), per_day.get(first + timedelta(d), 0)) for d in range(days)]
    )
    ordered = sorted(per_action.items(), key=lambda item: -item[1])
    return UsageOverview(runway, by_day, _bars([(action or "other", total) for action, total in ordered]))


def open_reservations_of(account: CreditAccount):
    return CreditReservation.objects.filter(
        organization_id=account.organization_id, status=ReservationStatus.HELD
    )


# --- Reconciliation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    account_id: int
    check: str
    expected: int
    actual: int

    def __str__(self) -> str:
        return f"account {self.account_id}: {self.check}: expected {self.expected}, found {self.actual}"


def reconciliation_problems(*, account_ids: list[int] | None = None) -> list[Problem]:
    """Every way in which cached figures disagree with the ledger.

    For each account: balance = sum of its ledger amounts = the last line's balance_after;
    sum of remaining grant credits = max(balance, 0) (a negative balance is overdraft, with
    every grant empty); held = sum of open reservations; frozen = the grants' owed and
    disputed credits. For each grant: remaining = sum of the
    ledger's allocations to it and of the lines that name it.
    """
    accounts = CreditAccount.objects.order_by("pk")
    if account_ids is not None:
        accounts = accounts.filter(pk__in=account_ids)
    accounts = accounts.annotate(
        ledger=Sum("transactions__amount"),
    )
    grants = dict(
        CreditGrant.objects.values_list("account_id")
        .annotate(s=Sum("remaining"))
        .values_list("account_id", "s")
    )
    locks = dict(
        CreditGrant.objects.values_list("account_id")
        .annotate(s=Sum(F("owed") + F("disputed")))
        .values_list("account_id", "s")
    )
    held = dict(
        CreditReservation.objects.filter(status=ReservationStatus.HELD)
        .values_list("account_id")
        .annotate(s=Sum("amount"))
        .values_list("account_id", "s")
    )
    problems = []
    for account in accounts:
        last = (
            CreditTransaction.objects.filter(organization_id=account.organization_id)
            .order_by("-pk")
            .values_list("balance_after", flat=True)
            .first()
        )
        checks = [
            ("balance = sum of ledger amounts", account.ledger or 0, account.balance),
            ("balance = last balance_after", last or 0, account.balance),
            ("remaining grants = max(balance, 0)", max(account.balance, 0), grants.get(account.pk) or 0),
            ("held = open reservations", held.get(account.pk) or 0, account.held),
            ("frozen = owed + disputed credits of grants", locks.get(account.pk) or 0, account.frozen),
        ]
        problems += [
            Problem(account.pk, name, expected, actual)
            for name, expected, actual in checks
            if expected != actual
        ]
    allocated: dict[int, int] = {}
    named = CreditTransaction.objects.filter(grant__isnull=False).values_list("grant_id")
    for rows in (CreditAllocation.objects.values_list("grant_id"), named):
        for grant_id, credits in rows.annotate(s=Sum("amount")).values_list("grant_id", "s"):
            allocated[grant_id] = allocated.get(grant_id, 0) + credits
    grant_rows = CreditGrant.objects.values_list("pk", "account_id", "remaining")
    if account_ids is not None:
        grant_rows = grant_rows.filter(account_id__in=account_ids)
    for grant_id, account_id, remaining in grant_rows:
        if allocated.get(grant_id, 0) != remaining:
            problems.append(
                Problem(
                    account_id,
                    f"grant {grant_id} remaining = its allocations",
                    allocated.get(grant_id, 0),
                    remaining,
                )
            )
    return problems


def recharge_of(account: CreditAccount, *, code: str) -> CreditRecharge | None:
    return (
        CreditRecharge.objects.select_related("package")
        .filter(organization_id=account.organization_id, code=code)
        .first()
    )


def recharge_awaiting_authentication(account: CreditAccount) -> CreditRecharge | None:
    """The account's latest recharge, if the cardholder's bank still waits for them to confirm it.
    Such a recharge turned auto-recharge off, and only an account with a recharge package has
    recharges: any other account is answered without a query."""
    if account.auto_recharge_enabled or account.auto_recharge_package_id is None:
        return None
    latest = (
        CreditRecharge.objects.select_related("package")
        .filter(organization_id=account.organization_id)
        .first()
    )
    return latest if latest is not None and latest.awaits_authentication else None
