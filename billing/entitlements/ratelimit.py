"""The API's rate limits: the plan's requests a minute for the organization (`api_rate`) and for
each API key or person (`api_key_rate`), enforced by `billing.entitlements.gating.RateLimited` on every API
view through the limiter in `teams/ratelimit.py`."""

import time
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from billing import entitlements
from teams.models import Organization
from teams.ratelimit import Bucket, RateDecision, limiter_count, limiter_hit

__all__ = [
    "Bucket",
    "RateDecision",
    "address_hit",
    "api_buckets",
    "forget_limits",
    "prefetch_keys",
    "rate_hit",
    "requests_this_minute",
]

FEATURE = "api_rate"  # requests a minute for the whole organization
CALLER_FEATURE = "api_key_rate"  # requests a minute for one API key or one person


def _plan_limit(effective: entitlements.Effective, feature: str) -> int | None:
    """Requests a minute the plan allows for `feature`; None when unlimited or not stated."""
    ent = effective.features.get(feature)
    if ent is None or ent.unlimited:
        return None
    return ent.limit if ent.enabled else 0


# The two limits of each organization, kept in this process for a few seconds: a consume or a
# usage batch then needs no cache read for its rate limit (the key's one round trip is all).
# A plan change made in this process forgets them at once (`forget_limits`, called by
# `entitlements.invalidate`); one made in another process reaches this one's limiter within
# LIMITS_TTL. Entitlement decisions never read these.
LIMITS_TTL = 5.0
_LIMITS_SIZE = 10_000
_limits: dict[int, tuple[float, datetime | None, int | None, int | None]] = {}


def forget_limits(organization_id: int | None = None) -> None:
    if organization_id is None:
        _limits.clear()
    else:
        _limits.pop(organization_id, None)


def _kept(organization_id: int, now: datetime, margin: float = 0.0) -> tuple[int | None, int | None] | None:
    """The organization's limits this process holds, if they are good for `margin` seconds more."""
    kept = _limits.get(organization_id)
    if kept is None or kept[0] <= time.monotonic() + margin or (kept[1] is not None and now >= kept[1]):
        return None
    return kept[2], kept[3]


def _limits_for(organization: Organization, now: datetime) -> tuple[int | None, int | None]:
    kept = _kept(organization.pk, now)
    if kept is not None:
        return kept
    effective = entitlements.effective_for(organization, now=now, remember=True)
    limits = (_plan_limit(effective, FEATURE), _plan_limit(effective, CALLER_FEATURE))
    if len(_limits) >= _LIMITS_SIZE:
        _limits.clear()
    _limits[organization.pk] = (time.monotonic() + LIMITS_TTL, effective.valid_until, *limits)
    return limits


# How long before its limits expire a request reads the plan with its API key instead.
PREFETCH_MARGIN = 0.5


def prefetch_keys(organization_id: int) -> list[str]:
    """For a view's `prefetch_keys` (see teams/keycache.py): the plan's cache keys when this
    process's limits of the organization are missing or about to expire, so that the limiter
    reads the plan in the API key's round trip instead of one of its own; none otherwise."""
    if _kept(organization_id, timezone.now(), PREFETCH_MARGIN) is not None:
        return []
    return entitlements.prefetch_keys(organization_id)


def api_buckets(*, organization: Organization, caller: str | None, now: datetime) -> list[Bucket]:
    """The organization's bucket (`api_rate`) and the caller's own (`api_key_rate`), so that one
    runaway key cannot use up what the organization's other keys and people share."""
    buckets = []
    org_limit, caller_limit = _limits_for(organization, now)
    if org_limit is not None:
        buckets.append(Bucket(f"org:{organization.pk}", org_limit))
    if caller and caller_limit is not None and (org_limit is None or caller_limit < org_limit):
        buckets.append(Bucket(f"{caller}:org{organization.pk}", caller_limit))
    return buckets


def rate_hit(
    *, organization: Organization, caller: str | None = None, now: datetime | None = None
) -> RateDecision:
    """Count one API request of `caller` ("key:<id>" or "user:<id>") for `organization`."""
    now = now or timezone.now()
    return limiter_hit(api_buckets(organization=organization, caller=caller, now=now), now=now)


def address_hit(*, address: str, now: datetime | None = None) -> RateDecision:
    """Count one request to a public API endpoint (the schema) from `address`."""
    return limiter_hit([Bucket(f"address:{address}", settings.API_ANONYMOUS_RATE)], now=now)


def requests_this_minute(organization: Organization) -> int:
    """For `entitlements.check` and the pages: the organization's requests in the last minute."""
    return limiter_count(Bucket(f"org:{organization.pk}", 0))


entitlements.register_counter(FEATURE, requests_this_minute)
entitlements.register_forget(forget_limits)
