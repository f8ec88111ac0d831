"""Debits: the grants drawn in the draw order, the ledger line and its allocations written with
the account move; on PostgreSQL in one statement, elsewhere one step at a time."""

import json
from datetime import UTC, date, datetime

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Sum
from django.utils import timezone

from common.postgresql.prepared import Prepared, one_message_possible
from credits import tasks
from credits.models import (
    CreditAccount,
    CreditAllocation,
    CreditGrant,
    CreditTransaction,
    CreditUsageDay,
    TransactionType,
)
from credits.models.ledger import draw_order_by, draw_order_sql
from credits.services.accounts import credit_account_for
from credits.services.ledger import (
    _RETURNING,
    _RETURNING_NAMES,
    _account_move,
    _check_same_request,
    _fetchone,
    _Refused,
    _replay,
    _replay_for_org,
    _spend_check,
)
from credits.services.validation import InsufficientCredits, Quote, _text
from teams.models import Organization, User


def _grants_draw(
    *, organization_id: int, amount: int, set_aside: bool = False
) -> tuple[list[tuple[int, int]], int]:
    """Take up to `amount` from the account's grants: by priority, then soonest expiry, then oldest,
    never from a grant past its date nor from its owed or disputed credits.

    `set_aside` (a confirmed reservation) may also reach what a hold kept aside while it was
    valid. Credits of grants that expired since go first: they were the soonest to expire when
    held, and whatever the confirm leaves of them expires, so drawing valid credits before them
    would lose the customer credits for confirming late. Then valid, then disputed, then owed.
    Returns (grant id, credits taken) and how many of those were frozen. Less than `amount` is
    taken only in overdraft, when every grant is empty. Call with the account row locked.
    """
    now = timezone.now()
    grants = list(
        CreditGrant.objects.filter(organization_id=organization_id, remaining__gt=0).order_by(
            *draw_order_by()
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

    if set_aside:
        for grant in grants:
            if grant.is_expired(now):
                take(grant, grant.drawable)
    for grant in grants:
        if not grant.is_expired(now):
            take(grant, grant.drawable)
    if set_aside:
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
# Every table is reached through the organization (the distribution column, see
# config/tenancy.py), so that sharded by it the statement runs on the organization's node.
_DEBIT_SQL = """
WITH moved AS (
    {moved}
), ordered AS (
    SELECT g.id, g.remaining - g.owed - g.disputed AS remaining,
           SUM(g.remaining - g.owed - g.disputed) OVER (
               ORDER BY {draw_order}
           ) - (g.remaining - g.owed - g.disputed) AS before
    FROM {grant} AS g JOIN moved ON g.organization_id = moved.organization_id
    WHERE g.remaining - g.owed - g.disputed > 0 AND (g.expires_at IS NULL OR g.expires_at > %(now)s)
), drawn AS (
    UPDATE {grant} AS g SET remaining = g.remaining - LEAST(o.remaining, %(amount)s - o.before)
    FROM ordered AS o WHERE g.organization_id = %(organization)s AND g.id = o.id AND o.before < %(amount)s
    RETURNING g.id, LEAST(o.remaining, %(amount)s - o.before) AS took
), entry AS (
    INSERT INTO {transaction} ({columns}) SELECT {values} FROM moved
    RETURNING id, organization_id, grant_id
), allocated AS (
    INSERT INTO {allocation} (organization_id, transaction_id, grant_id, amount)
    SELECT entry.organization_id, entry.id, drawn.id, -drawn.took FROM entry CROSS JOIN drawn
    WHERE entry.grant_id IS NULL
), rolled AS (
    INSERT INTO {usage_day} AS u (organization_id, account_id, day, action, credits, consumptions)
    SELECT moved.organization_id, moved.id, %(day)s, %(c_action)s, %(amount)s, 1 FROM moved JOIN entry ON TRUE
    WHERE %(c_type)s = 'consumption'
    ON CONFLICT (organization_id, day, action)
    DO UPDATE SET credits = u.credits + EXCLUDED.credits, consumptions = u.consumptions + 1
)
SELECT id, (SELECT COALESCE(SUM(took), 0) FROM drawn), grant_id FROM entry
"""


_ENTRY_COLUMNS = [
    "code",
    "organization_id",
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
    "grant_id",
]


def _debit_sql(moved: str) -> str:
    # Only constant fragments are interpolated; every value travels as a parameter.
    def value(name: str) -> str:
        return {
            "organization_id": "moved.organization_id",
            "account_id": "moved.id",
            "balance_after": "moved.balance",
            "metadata": "%(c_metadata)s::jsonb",
            # The line names its grant when it took its whole amount from one (see the model).
            "grant_id": (
                "(SELECT CASE WHEN COUNT(*) = 1 AND SUM(took) = %(amount)s THEN MIN(id) END FROM drawn)"
            ),
        }.get(name, f"%(c_{name})s")

    return _DEBIT_SQL.format(
        moved=moved,
        grant=CreditGrant._meta.db_table,
        draw_order=draw_order_sql("g"),
        transaction=CreditTransaction._meta.db_table,
        allocation=CreditAllocation._meta.db_table,
        usage_day=CreditUsageDay._meta.db_table,
        columns=", ".join(_ENTRY_COLUMNS),
        values=", ".join(value(n) for n in _ENTRY_COLUMNS),
    )


def _debit_params(entry: CreditTransaction, amount: int) -> dict:
    params = {f"c_{name}": getattr(entry, name) for name in _ENTRY_COLUMNS if name != "grant_id"}
    params["c_metadata"] = json.dumps(entry.metadata)
    params["amount"] = amount
    params["now"] = timezone.now()
    params["day"] = _usage_day(entry.created_at)
    return params


def _usage_day(at: datetime) -> date:
    return at.astimezone(UTC).date()


def _usage_roll_up(entry: CreditTransaction) -> None:
    """Add a consumption written through the ORM to its day (the SQL paths do it in the same
    statement); inside the transaction that wrote it."""
    if entry.type != TransactionType.CONSUMPTION:
        return
    day, _ = CreditUsageDay.objects.get_or_create(
        organization_id=entry.organization_id,
        day=_usage_day(entry.created_at),
        action=entry.action,
        defaults={"account_id": entry.account_id},
    )
    CreditUsageDay.objects.filter(pk=day.pk).update(
        credits=F("credits") - entry.amount, consumptions=F("consumptions") + 1
    )


def _debit_entry(
    *, account: CreditAccount, amount: int, set_aside: bool = False, **fields
) -> CreditTransaction:
    """Draw `amount` from the grants of `account` (locked, balance already moved) and write the
    ledger line with its allocations. Raises IntegrityError if the idempotency key is taken.

    `set_aside`: a confirmed hold, which may reach credits of a grant that expired since it was
    made (never frozen ones here: a confirm with frozen credits takes the portable path)."""
    entry = CreditTransaction(
        organization_id=account.organization_id,
        account_id=account.pk,
        amount=-amount,
        balance_after=account.balance,
        **fields,
    )
    # The statement draws valid grants only; a confirm that may reach expired ones draws them first.
    portable = connection.vendor != "postgresql" or not SINGLE_STATEMENT_DEBIT
    if portable or (set_aside and _expired_left(account.organization_id)):
        draws, _ = _grants_draw(organization_id=account.organization_id, amount=amount, set_aside=set_aside)
        draws = _grant_name(entry, draws)
        entry.save(force_insert=True)
        _allocations_write(entry, draws)
        _usage_roll_up(entry)
        return entry
    params = _debit_params(entry, amount)
    params.update(account=account.pk, organization=account.organization_id, balance=account.balance)
    entry.pk, drawn, entry.grant_id = _fetchone(
        _debit_sql(
            "SELECT %(account)s::bigint AS id, %(organization)s::bigint AS organization_id, "
            "%(balance)s::bigint AS balance"
        ),
        params,
    )
    entry._state.adding = False
    if set_aside and drawn < amount:
        # A grant expired between the check above and the statement: its set-aside credits.
        draws, _ = _grants_draw(
            organization_id=account.organization_id, amount=amount - drawn, set_aside=True
        )
        _allocations_write(entry, draws)
    return entry


def _grant_name(entry: CreditTransaction, draws: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Before a debit's line is saved: name its grant if it took its whole amount from one (as
    the single statement does); returns the draws left for allocation rows."""
    if len(draws) == 1 and draws[0][1] == -entry.amount:
        entry.grant_id = draws[0][0]
        return []
    return draws


def _allocations_write(entry: CreditTransaction, draws: list[tuple[int, int]]) -> None:
    CreditAllocation.objects.bulk_create(
        [
            CreditAllocation(organization_id=entry.organization_id, transaction=entry, grant_id=g, amount=-t)
            for g, t in draws
        ]
    )


def _expired_left(organization_id: int) -> bool:
    return CreditGrant.objects.filter(
        organization_id=organization_id, remaining__gt=0, expires_at__lte=timezone.now()
    ).exists()


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


# Only constant fragments are interpolated; every value travels as a parameter. Prepared once
# per connection: planning the two took about as long as running them.
_ONE_TRIP = Prepared(
    f"UPDATE {_ACCOUNT} SET balance = balance - %(amount)s, lifetime_used = lifetime_used + %(used)s "  # noqa: S608
    f"WHERE organization_id = %(organization)s AND "
    + _spend_check(amount="%(amount)s", now="%(now)s", organization=f"{_ACCOUNT}.organization_id")
    + f" RETURNING {_RETURNING}",
    _debit_sql(
        f"SELECT id, organization_id, balance FROM {_ACCOUNT} "  # noqa: S608
        f"WHERE organization_id = %(organization)s AND xmin = pg_current_xact_id()::xid"
    ),
)


def _one_trip_possible() -> bool:
    return SINGLE_STATEMENT_DEBIT and one_message_possible(connection)


def _debit_one_trip(
    *, organization_id: int, amount: int, used: int, **fields
) -> tuple[CreditAccount, CreditTransaction] | None:
    """Debit in one round trip (see above); None when the account is missing or short of funds."""
    entry = CreditTransaction(amount=-amount, **fields)
    params = _debit_params(entry, amount)
    params.update(organization=organization_id, used=used)
    with connection.cursor() as cursor:
        _ONE_TRIP.execute(cursor, params)
        row = cursor.fetchone()
        cursor.nextset()
        inserted = cursor.fetchone()
    if row is None:
        return None
    account = CreditAccount(**dict(zip(_RETURNING_NAMES, row, strict=True)))
    entry.pk, entry.account_id, entry.balance_after = inserted[0], account.pk, account.balance
    entry.grant_id = inserted[2]
    entry.organization_id = organization_id
    entry._state.adding = False
    return account, entry


def _after_debit(account: CreditAccount, *, amount: int, transaction_id: int) -> None:
    """Queue the alert and the recharge for the one debit that crosses their thresholds."""
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
            organization_id = CreditAccount.objects.values_list("organization_id", flat=True).get(
                pk=account_id
            )
            original = _replay(CreditTransaction, organization_id=organization_id, key=idempotency_key)
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
    original = _replay(CreditTransaction, organization_id=account.organization_id, key=idempotency_key)
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
            organization_id=account.organization_id, remaining__gt=0, expires_at__lte=timezone.now()
        ).aggregate(s=Sum("remaining"))["s"]
        or 0
    )
    overdraft = account.overdraft_allowance if not account.frozen and not expired else 0
    return account.balance - account.frozen - account.held - expired + overdraft
