"""Consuming and releasing quota: one conditional UPDATE on the period's counter, with usage alerts
at the thresholds crossed."""

from dataclasses import replace
from datetime import datetime

from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from billing.entitlements.decisions import Decision, Reason
from billing.entitlements.engine import (
    USAGE_TTL,
    _alert_crossings,
    _decide,
    _denied,
    _read_usage,
    _usage_key,
    effective_for,
)
from billing.models import (
    Feature,
    Overage,
    UsageCounter,
    UsageEvent,
)
from teams.models import Organization


class _Refused(Exception):
    pass


def _counter(organization, ent, period) -> UsageCounter:
    counter, _ = UsageCounter.objects.get_or_create(
        organization=organization,
        feature_id=ent.feature_id,
        period_start=period.start,
        defaults={"period_end": period.end},
    )
    return counter


def _add(counter_id: int, amount: int, ceiling: int | None) -> int | None:
    """Add `amount` unless that would pass `ceiling`; the new total, or None if refused."""
    table = UsageCounter._meta.db_table
    sql = f"UPDATE {table} SET used = used + %s WHERE id = %s"  # noqa: S608 (names are ours)
    params = [amount, counter_id]
    if ceiling is not None:
        sql += " AND used + %s <= %s"
        params += [amount, ceiling]
    with connection.cursor() as cursor:
        cursor.execute(sql + " RETURNING used", params)
        row = cursor.fetchone()
    return row[0] if row else None


def consume(
    organization: Organization,
    feature: str,
    amount: int,
    *,
    idempotency_key: str,
    now: datetime | None = None,
) -> Decision:
    """Record `amount` units of a metered feature, or refuse without recording anything.

    Calling again with the same key returns the first outcome and changes nothing.
    """
    if amount <= 0:
        raise ValueError("amount must be positive; use release() to give units back")
    now = now or timezone.now()
    effective = effective_for(organization, now=now)
    ent = effective.features.get(feature)
    if ent is None:
        return Decision(feature, False, Reason.UNKNOWN_FEATURE, amount)
    if ent.kind != Feature.Kind.METERED:
        raise ValueError(f"{feature!r} is not metered; limits are counted, not consumed")
    if not ent.enabled:
        return _denied(organization, effective, ent, Reason.NOT_INCLUDED, amount, 0, None)
    if effective.restricted(now):
        return Decision(feature, False, Reason.RESTRICTED, amount, name=ent.name, unit=ent.unit)
    period = effective.period(now)
    ceiling = None if ent.unlimited or ent.overage == Overage.BILL else ent.limit
    try:
        with transaction.atomic():
            counter = _counter(organization, ent, period)
            try:
                with transaction.atomic():
                    UsageEvent.objects.create(
                        organization=organization,
                        feature_id=ent.feature_id,
                        idempotency_key=idempotency_key,
                        quantity=amount,
                        period_start=period.start,
                        created_at=now,
                    )
            except IntegrityError:
                return _replay(organization, ent, idempotency_key, effective, now)
            used = _add(counter.pk, amount, ceiling)
            if used is None:
                raise _Refused
            _alert_crossings(organization, ent, period, used - amount, used)
            transaction.on_commit(
                lambda: cache.set(_usage_key(organization.pk, feature), (period.start, used), USAGE_TTL)
            )
    except _Refused:
        used = _read_usage(organization, ent, period)
        reason = Reason.QUOTA_EXCEEDED
        return _denied(organization, effective, ent, reason, amount, used, period)
    return replace(_decide(organization, effective, ent, 0, used, period), requested=amount)


def _replay(organization, ent, key, effective, now) -> Decision:
    event = UsageEvent.objects.get(organization=organization, idempotency_key=key)
    if event.feature_id != ent.feature_id or event.quantity <= 0:
        raise ValueError(f"Idempotency key {key!r} was already used for another operation.")
    period = effective.period(event.period_start)
    used = _read_usage(organization, ent, period)
    decision = _decide(organization, effective, ent, 0, used, period)
    return replace(
        decision, requested=event.quantity, replayed=True, allowed=True, reason=Reason.OK, upgrade=None
    )


def release(
    organization: Organization,
    feature: str,
    amount: int,
    *,
    idempotency_key: str,
    now: datetime | None = None,
) -> int:
    """Give back units consumed this period (e.g. the work failed). Returns the new usage."""
    if amount <= 0:
        raise ValueError("amount must be positive")
    now = now or timezone.now()
    effective = effective_for(organization, now=now)
    ent = effective.features.get(feature)
    if ent is None or ent.kind != Feature.Kind.METERED:
        raise ValueError(f"{feature!r} is not a metered feature")
    period = effective.period(now)
    with transaction.atomic():
        counter = _counter(organization, ent, period)
        try:
            with transaction.atomic():
                UsageEvent.objects.create(
                    organization=organization,
                    feature_id=ent.feature_id,
                    idempotency_key=idempotency_key,
                    quantity=-amount,
                    period_start=period.start,
                    created_at=now,
                )
        except IntegrityError:
            return _read_usage(organization, ent, period)
        table = UsageCounter._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET used = CASE WHEN used > %s THEN used - %s ELSE 0 END "  # noqa: S608
                "WHERE id = %s RETURNING used",
                [amount, amount, counter.pk],
            )
            used = cursor.fetchone()[0]
        transaction.on_commit(
            lambda: cache.set(_usage_key(organization.pk, feature), (period.start, used), USAGE_TTL)
        )
    return used


def period_reset_at(organization: Organization, *, now: datetime | None = None) -> datetime:
    now = now or timezone.now()
    return effective_for(organization, now=now).period(now).end
