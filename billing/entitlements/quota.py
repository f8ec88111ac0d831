"""Consuming and releasing quota: one conditional UPDATE on the period's counter, with usage alerts
at the thresholds crossed."""

from dataclasses import replace
from datetime import datetime

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.entitlements.counter import usage_counter_add
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
from billing.metering import days
from billing.models import Feature, Overage, UsageEvent
from teams.models import Organization


class _Refused(Exception):
    pass


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
            try:
                with transaction.atomic():
                    _log(organization, ent, idempotency_key, amount, period, now)
            except IntegrityError:
                return _replay(organization, ent, idempotency_key, effective, now)
            move = usage_counter_add(
                organization_id=organization.pk,
                feature_id=ent.feature_id,
                period=period,
                amounts=[amount],
                ceiling=ceiling,
            )
            if not move.taken:
                raise _Refused
            used = move.after
            _alert_crossings(organization, ent, period, used - amount, used)
            transaction.on_commit(
                lambda: cache.set(_usage_key(organization.pk, feature), (period.start, used), USAGE_TTL)
            )
    except _Refused:
        used = _read_usage(organization, ent, period)
        reason = Reason.QUOTA_EXCEEDED
        return _denied(organization, effective, ent, reason, amount, used, period)
    return replace(_decide(organization, effective, ent, 0, used, period), requested=amount)


def _log(organization, ent, key: str, amount: int, period, now: datetime) -> None:
    event = UsageEvent.objects.create(
        organization=organization,
        source=UsageEvent.Source.CONSUME,
        feature_id=ent.feature_id,
        event_id=key,
        value=amount,
        timestamp=now,
        period_start=period.start,
        received_at=now,
    )
    days.usage_days_add(
        organization_id=organization.pk, by="feature", rows=days.recorded([event], by="feature")
    )


def _replay(organization, ent, key, effective, now) -> Decision:
    event = UsageEvent.objects.with_id(organization.pk, UsageEvent.Source.CONSUME, key).get()
    if event.feature_id != ent.feature_id or event.value <= 0:
        raise ValueError(f"Idempotency key {key!r} was already used for another operation.")
    period = effective.period(event.period_start)
    used = _read_usage(organization, ent, period)
    decision = _decide(organization, effective, ent, 0, used, period)
    return replace(
        decision, requested=event.value, replayed=True, allowed=True, reason=Reason.OK, upgrade=None
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
        try:
            with transaction.atomic():
                _log(organization, ent, idempotency_key, -amount, period, now)
        except IntegrityError:
            return _read_usage(organization, ent, period)
        used = usage_counter_add(
            organization_id=organization.pk, feature_id=ent.feature_id, period=period, amounts=[-amount]
        ).after
        transaction.on_commit(
            lambda: cache.set(_usage_key(organization.pk, feature), (period.start, used), USAGE_TTL)
        )
    return used


def period_reset_at(organization: Organization, *, now: datetime | None = None) -> datetime:
    now = now or timezone.now()
    return effective_for(organization, now=now).period(now).end
