"""The entitlement engine: may this organization use this feature, and how much is left?

Effective entitlements are the organization's plan (its subscription's while that applies,
otherwise the free plan) plus its grants (comps, grandfathered cohorts, add-ons bought). They are
computed in three queries at most and cached; a cached `check` is one round trip to the cache.

`consume` is exact under concurrency: a metered counter only moves through a conditional
`UPDATE ... WHERE used + n <= limit RETURNING used`, so concurrent callers can never push usage
past the limit, and each call carries an idempotency key the database keeps unique.
"""

import time
import uuid
from dataclasses import replace
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing.catalog.spec import UNLIMITED
from billing.entitlements.counter_registry import COUNTERS, FORGET
from billing.entitlements.decisions import Decision, Effective, FeatureEntitlement, Reason
from billing.entitlements.upgrades import cached_upgrade
from billing.models import (
    PLAN_STATUSES,
    EntitlementGrant,
    Feature,
    Meter,
    OrgSubscription,
    Overage,
    Plan,
    PlanEntitlement,
    UsageAlert,
    UsageCounter,
    UsageDay,
)
from billing.notifications import usage_alert_queue
from billing.periods import Period
from teams.models import Organization

CACHE_TTL = 3600


USAGE_TTL = 300


VERSION_KEY = "billing:catalog-version"


def _ent_key(org_id: int) -> str:
    return f"billing:ent:{org_id}"


def _usage_key(org_id: int, feature: str) -> str:
    return f"billing:usage:{org_id}:{feature}"


def _generation_key(org_id: int) -> str:
    return f"billing:ent-gen:{org_id}"


# Outlives any cached entitlement; if it is evicted anyway, a new generation makes every cached
# entitlement of the organization stale, which is safe.
GENERATION_TTL = 30 * 24 * 3600


def _new_generation() -> str:
    return uuid.uuid4().hex


def _generation(org_id: int) -> str:
    """The organization's current cache generation, read before its data is: a computation
    is stored under the generation it started in, so one that read the database before a
    change, and stores after the change's invalidation, is never taken as fresh."""
    key = _generation_key(org_id)
    generation = cache.get(key)
    if generation is None:
        cache.add(key, _new_generation(), GENERATION_TTL)
        generation = cache.get(key) or ""
    return generation


def _catalog_version() -> str:
    version = cache.get(VERSION_KEY)
    if version is None:
        version = str(time.time_ns())
        cache.add(VERSION_KEY, version, None)
        version = cache.get(VERSION_KEY, version)
    return version


def invalidate(organization: Organization | int) -> None:
    """Forget one organization's entitlements: call after its subscription or grants change."""
    org_id = organization if isinstance(organization, int) else organization.pk
    if not isinstance(organization, int):
        organization.__dict__.pop("_request_effective", None)
    # A new generation first: a reader that computed from the old data, and stores after this,
    # stores under the old generation, which nobody takes as fresh.
    cache.set(_generation_key(org_id), _new_generation(), GENERATION_TTL)
    cache.delete(_ent_key(org_id))
    for forget in FORGET:
        forget(org_id)


def invalidate_catalog() -> None:
    """Forget every organization's entitlements at once (a plan or add-on changed)."""
    cache.set(VERSION_KEY, str(time.time_ns()), None)
    for forget in FORGET:
        forget(None)


def _compute(organization: Organization, version: str, now: datetime) -> Effective:
    subscription = OrgSubscription.objects.filter(organization=organization, status__in=PLAN_STATUSES)
    free_plan = Plan.objects.filter(is_free=True).values("id")[:1]
    plan_id = Coalesce(Subquery(subscription.values("plan_id")[:1]), Subquery(free_plan))
    # A limit fed by a gauge meter (e.g. storage) rides along too.
    gauge = Meter.objects.filter(
        feature_id=OuterRef("feature_id"), feature__kind=Feature.Kind.LIMIT, is_active=True
    )
    # Query 1: the plan's entitlements, with the subscription's anchor riding along.
    rows = list(
        PlanEntitlement.objects.filter(plan_id=plan_id)
        .select_related("feature", "plan")
        .annotate(
            # Usage periods follow the subscription's own: a renewal starts a new one.
            anchor=Subquery(subscription.values("current_period_start")[:1]),
            status=Subquery(subscription.values("status")[:1]),
            grace_until=Subquery(subscription.values("grace_until")[:1]),
            dispute_grace_until=Subquery(subscription.values("dispute_grace_until")[:1]),
            gauge_meter_id=Subquery(gauge.values("id")[:1]),
            gauge_scale=Subquery(gauge.values("scale")[:1]),
        )
    )
    # Query 2: grants to this organization that apply now or will start later.
    grants = list(
        EntitlementGrant.objects.filter(organizations=organization)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .values("feature_id", "amount", "unlimited", "starts_at", "expires_at")
    )
    valid_until = None
    active = []
    for grant in grants:
        if grant["starts_at"] > now:
            valid_until = min(filter(None, [valid_until, grant["starts_at"]]))
            continue
        active.append(grant)
        if grant["expires_at"]:
            valid_until = min(filter(None, [valid_until, grant["expires_at"]]))

    features = {}
    for row in rows:
        limit, enabled = row.limit, row.enabled
        for grant in active:
            if grant["feature_id"] != row.feature_id:
                continue
            enabled = True
            if grant["unlimited"] or limit == UNLIMITED:
                limit = UNLIMITED
            else:
                limit += grant["amount"]
        f = row.feature
        features[f.key] = FeatureEntitlement(
            key=f.key,
            kind=f.kind,
            name=f.name,
            unit=f.unit,
            enabled=enabled,
            limit=limit if f.kind != Feature.Kind.BOOLEAN else 0,
            overage=row.overage,
            warn_at=tuple(row.warn_at or ()),
            feature_id=f.pk,
            sort_order=f.sort_order,
            gauge_meter_id=row.gauge_meter_id,
            gauge_scale=row.gauge_scale or 1,
        )
    first = rows[0] if rows else None
    return Effective(
        version=version,
        plan_key=first.plan.key if first else "",
        plan_name=first.plan.name if first else "",
        anchor=first.anchor if first else None,
        plan_interval=first.plan.interval if first else "month",
        status=(first.status or "") if first else "",
        grace_until=first.grace_until if first else None,
        dispute_grace_until=first.dispute_grace_until if first else None,
        features=features,
        valid_until=valid_until,
    )


def _store(organization: Organization, effective: Effective, generation: str, now: datetime) -> Effective:
    effective = replace(effective, generation=generation)
    ttl = CACHE_TTL
    if effective.valid_until:
        ttl = max(1, min(ttl, int((effective.valid_until - now).total_seconds())))
    cache.set(_ent_key(organization.pk), effective, ttl)
    return effective


# An API request reads its organization's entitlements for the rate limit, then again for the
# check or charge it makes. The rate limiter leaves what it read on the request's organization
# instance (`remember=True`), and the second read, a moment later in the same request, takes it
# from there instead of another round trip. Bounded in time, and dropped by `invalidate`.
REQUEST_MEMO_SECONDS = 1.0


def _request_memo(organization: Organization, now: datetime) -> Effective | None:
    memo = organization.__dict__.get("_request_effective")
    if memo is None or time.monotonic() - memo[1] >= REQUEST_MEMO_SECONDS:
        return None
    effective = memo[0]
    return effective if effective.valid_until is None or now < effective.valid_until else None


def effective_for(
    organization: Organization, *, now: datetime | None = None, remember: bool = False
) -> Effective:
    effective = _effective_for(organization, now=now)
    if remember:
        organization.__dict__["_request_effective"] = (effective, time.monotonic())
    return effective


def _effective_for(organization: Organization, *, now: datetime | None = None) -> Effective:
    now = now or timezone.now()
    # One round trip for the three (the API key's, when the view asked for them with
    # `prefetch_keys`); the generation is read before the database is.
    generation_key, ent_key = _generation_key(organization.pk), _ent_key(organization.pk)
    cached = _prefetched(organization, [VERSION_KEY, generation_key, ent_key])
    if cached is None:
        cached = cache.get_many([VERSION_KEY, generation_key, ent_key])
    version = cached.get(VERSION_KEY) or _catalog_version()
    generation = cached.get(generation_key) or _generation(organization.pk)
    effective = cached.get(ent_key)
    if _fresh(effective, version, generation, now):
        return effective
    effective = _compute(organization, version, now)
    return _store(organization, effective, generation, now)


def prefetch_keys(organization_id: int) -> list[str]:
    """What `check` reads first, as Redis keys, for an API key's authentication to read in its
    own round trip (teams/keycache.py); none unless the cache is that same Redis."""
    if not hasattr(cache, "decode") or settings.CACHES["default"].get("LOCATION") != settings.REDIS_URL:
        return []
    keys = (VERSION_KEY, _generation_key(organization_id), _ent_key(organization_id))
    return [cache.make_key(key) for key in keys]


def _prefetched(organization: Organization, keys: list[str]) -> dict | None:
    """The values of `keys` read with the request's API key, once; None when they were not."""
    raw = organization.__dict__.pop("_prefetched", None)
    if raw is None:
        return None
    try:
        values = {key: cache.decode(raw[cache.make_key(key)]) for key in keys}
    except KeyError:
        return None
    return {key: value for key, value in values.items() if value is not None}


def _fresh(effective, version, generation, now) -> bool:
    return (
        effective is not None
        and effective.version == version
        and getattr(effective, "generation", "") == generation
        and bool(generation)
        and (effective.valid_until is None or now < effective.valid_until)
    )


def _warning(ent: FeatureEntitlement, used: int) -> int | None:
    if ent.unlimited or ent.limit <= 0:
        return None
    reached = [p for p in ent.warn_at if used * 100 >= p * ent.limit]
    return max(reached) if reached else None


def _read_usage(organization: Organization, ent: FeatureEntitlement, period: Period) -> int:
    used = (
        UsageCounter.objects.filter(
            organization=organization, feature_id=ent.feature_id, period_start=period.start
        )
        .values_list("used", flat=True)
        .first()
    ) or 0
    cache.set(_usage_key(organization.pk, ent.key), (period.start, used), USAGE_TTL)
    return used


def check_fresh(organization: Organization, feature: str, *, now: datetime | None = None) -> Decision:
    """`check` of nothing more, with a metered feature's usage read from its counter (and cached)
    first: for telling a caller what is left right after this very request used some of it."""
    now = now or timezone.now()
    effective = effective_for(organization, now=now)
    ent = effective.features.get(feature)
    if ent is not None and ent.kind == Feature.Kind.METERED:
        _read_usage(organization, ent, effective.period(now))
    return check(organization, feature, 0, now=now)


def check(
    organization: Organization, feature: str, requested: int = 1, *, now: datetime | None = None
) -> Decision:
    """Would `requested` more units of `feature` be allowed right now?

    For metered features the count comes from the cache, which concurrent consumers update as
    they commit; `consume` is the exact gate.
    """
    now = now or timezone.now()
    version_key, generation_key, ent_key, usage_key = (
        VERSION_KEY,
        _generation_key(organization.pk),
        _ent_key(organization.pk),
        _usage_key(organization.pk, feature),
    )
    effective = _request_memo(organization, now)
    if effective is None:
        # The generation comes in the same round trip, before the database is read: the API
        # key's own when the view asked for them (`prefetch_keys`), else one of its own.
        cached = _prefetched(organization, [version_key, generation_key, ent_key])
        usage_read = cached is None
        if usage_read:
            cached = cache.get_many([version_key, generation_key, ent_key, usage_key])
        version = cached.get(version_key) or _catalog_version()
        generation = cached.get(generation_key) or _generation(organization.pk)
        effective = cached.get(ent_key)
        if not _fresh(effective, version, generation, now):
            effective = _compute(organization, version, now)
            effective = _store(organization, effective, generation, now)
    else:
        cached, usage_read = None, False  # the usage counter, when needed, is read below

    ent = effective.features.get(feature)
    if ent is None:
        return Decision(feature, False, Reason.UNKNOWN_FEATURE, requested)
    if ent.kind == Feature.Kind.BOOLEAN:
        if ent.enabled:
            return Decision(feature, True, Reason.OK, requested, name=ent.name, unit=ent.unit)
        return _denied(organization, effective, ent, Reason.NOT_INCLUDED, requested, 0, None)

    if requested > 0 and effective.restricted(now):
        return Decision(feature, False, Reason.RESTRICTED, requested, name=ent.name, unit=ent.unit)
    period = None
    if ent.kind == Feature.Kind.METERED:
        period = effective.period(now)
        usage = cached.get(usage_key) if usage_read else cache.get(usage_key)
        if usage is not None and usage[0] == period.start:
            used = usage[1]
        else:
            used = _read_usage(organization, ent, period)
    elif ent.gauge_meter_id is not None:
        used = _gauge(organization, ent)
    else:
        counter = COUNTERS.get(feature)
        if counter is None:
            raise LookupError(f"No counter is registered for the limit feature {feature!r}.")
        used = counter(organization)
    return _decide(organization, effective, ent, requested, used, period)


def _gauge(organization: Organization, ent: FeatureEntitlement) -> int:
    """A gauge-fed limit's usage: the latest value its meter received, in the limit's units.
    A gauge does not reset: the latest period with events holds the latest value."""
    latest = (
        UsageDay.objects.filter(organization=organization, meter_id=ent.gauge_meter_id)
        .order_by("-period_start", "-last_at", "-last_event")
        .values_list("last_value", flat=True)
        .first()
    )
    return (latest or 0) * ent.gauge_scale


def _decide(organization, effective, ent, requested, used, period) -> Decision:
    bounds = {"period_start": period.start, "period_end": period.end} if period else {}
    bounds.update(name=ent.name, unit=ent.unit)
    if not ent.enabled:
        return _denied(organization, effective, ent, Reason.NOT_INCLUDED, requested, used, period)
    if ent.unlimited:
        return Decision(ent.key, True, Reason.OK, requested, used, None, True, ent.overage, **bounds)
    # Asking for nothing reports the state; it is never a refusal (pages show "12 of 10").
    # Past the limit only billed overage goes on; credit-paid overage is the caller's to charge.
    if requested == 0 or used + requested <= ent.limit or ent.overage == Overage.BILL:
        return Decision(
            ent.key,
            True,
            Reason.OK,
            requested,
            used,
            ent.limit,
            False,
            ent.overage,
            warning=_warning(ent, used),
            **bounds,
        )
    reason = Reason.QUOTA_EXCEEDED if period else Reason.LIMIT_REACHED
    return _denied(organization, effective, ent, reason, requested, used, period)


def _denied(organization, effective, ent, reason, requested, used, period) -> Decision:
    bounds = {"period_start": period.start, "period_end": period.end} if period else {}
    bounds.update(name=ent.name, unit=ent.unit)
    limit = None if ent.kind == Feature.Kind.BOOLEAN else ent.limit
    return Decision(
        ent.key,
        False,
        reason,
        requested,
        used,
        limit,
        False,
        ent.overage,
        warning=_warning(ent, used) if ent.kind != Feature.Kind.BOOLEAN else None,
        upgrade=cached_upgrade(organization, effective, ent, used + requested),
        **bounds,
    )


def entitlements_for(organization: Organization, *, now: datetime | None = None) -> list[Decision]:
    """Every feature with its limit and usage, in catalog order: for pages and the API."""
    now = now or timezone.now()
    effective = effective_for(organization, now=now)
    ordered = sorted(effective.features.values(), key=lambda e: e.sort_order)
    # A limit nobody counts (e.g. a rate enforced elsewhere) has no usage to list.
    return [
        check(organization, ent.key, 0, now=now)
        for ent in ordered
        if ent.kind != Feature.Kind.LIMIT or ent.key in COUNTERS or ent.gauge_meter_id is not None
    ]


def low_quotas(organization: Organization, *, now: datetime | None = None) -> list[Decision]:
    """Metered quotas past their first warning threshold: cheap enough for every page (cache
    reads only once warm)."""
    now = now or timezone.now()
    effective = effective_for(organization, now=now)
    decisions = [
        check(organization, ent.key, 0, now=now)
        for ent in effective.features.values()
        if ent.kind == Feature.Kind.METERED and ent.enabled and not ent.unlimited
    ]
    return [d for d in decisions if d.warning]


def catalog_version() -> str:
    """The catalog's current version: caches of catalog data (meters) are keyed by it."""
    return _catalog_version()


def usage_recorded(
    organization: Organization, ent: FeatureEntitlement, period: Period, before: int, after: int
) -> None:
    """A batch moved a metered counter from `before` to `after` inside the current transaction:
    send the warnings it crossed, and refresh the cached usage once it commits."""
    _alert_crossings(organization, ent, period, before, after)
    transaction.on_commit(lambda: usage_cached(organization, ent.key, period, after))


def usage_cached(organization: Organization, feature: str, period: Period, used: int) -> None:
    """Tell `check` the counter's committed value (e.g. after a refusal changed nothing)."""
    cache.set(_usage_key(organization.pk, feature), (period.start, used), USAGE_TTL)


def _alert_crossings(organization, ent, period, before: int, after: int) -> None:
    if ent.unlimited or ent.limit <= 0:
        return
    for threshold in ent.warn_at:
        mark = threshold * ent.limit
        if before * 100 < mark <= after * 100:
            alert, created = UsageAlert.objects.get_or_create(
                organization=organization,
                feature_id=ent.feature_id,
                period_start=period.start,
                threshold=threshold,
                defaults={"used": after, "limit": ent.limit},
            )
            if created:
                usage_alert_queue(alert=alert)
