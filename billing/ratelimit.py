"""Plan-based API rate limits: requests per minute per organization, counted in the shared
cache (Redis in production) so that every web process enforces one limit.

A fixed one-minute window: one atomic increment per request. At a window's edge a client may
fit up to twice its rate into a short burst, which a per-minute entitlement tolerates.
"""

import math
from dataclasses import dataclass
from datetime import datetime

from django.core.cache import cache
from django.utils import timezone

from billing import entitlements
from teams.models import Organization

FEATURE = "api_rate"
WINDOW = 60


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int | None  # None when unlimited
    count: int
    retry_after: int  # seconds until the window resets


def _key(organization_id: int, window: int) -> str:
    return f"billing:rate:{organization_id}:{window}"


def _window(now: datetime) -> tuple[int, int]:
    seconds = now.timestamp()
    return int(seconds // WINDOW), max(1, math.ceil(WINDOW - seconds % WINDOW))


def rate_hit(*, organization: Organization, now: datetime | None = None) -> RateDecision:
    """Count one request; refused when it is past the plan's requests per minute."""
    now = now or timezone.now()
    ent = entitlements.effective_for(organization, now=now).features.get(FEATURE)
    window, retry_after = _window(now)
    if ent is None or ent.unlimited:
        return RateDecision(True, None, 0, retry_after)
    limit = ent.limit if ent.enabled else 0
    key = _key(organization.pk, window)
    cache.add(key, 0, WINDOW * 2)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, WINDOW * 2)
        count = 1
    return RateDecision(count <= limit, limit, count, retry_after)


def requests_this_minute(organization: Organization) -> int:
    """For `entitlements.check` and the pages: requests counted in the current window."""
    window, _ = _window(timezone.now())
    return int(cache.get(_key(organization.pk, window)) or 0)


entitlements.register_counter(FEATURE, requests_this_minute)
