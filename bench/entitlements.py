"""Entitlement checks: the path every gated page, button and API call goes through.

Baseline: a bare `cache.get` of one key from the same cache (Redis, as in production).
Budget: a cached `check` costs at most 3x the baseline.
"""

import os

os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")

from _setup import setup_django, timed

setup_django()

from django.core.cache import cache  # noqa: E402

from billing import entitlements  # noqa: E402
from billing.catalog import catalog_apply, load_catalog  # noqa: E402
from billing.models import Plan  # noqa: E402
from teams import services as team_services  # noqa: E402
from teams.models import Organization, User  # noqa: E402

N = 20_000
BUDGET = 3.0

catalog_apply(load_catalog())
user, _ = User.objects.get_or_create(email="bench-entitlements@example.com")
org = Organization.objects.filter(slug="bench-entitlements").first()
if org is None:
    org = team_services.organization_create(owner=user, name="bench entitlements")
    Organization.objects.filter(pk=org.pk).update(slug="bench-entitlements")
    org.refresh_from_db()
entitlements.subscription_set(organization=org, plan=Plan.objects.get(key="pro_monthly"), status="active")
cache.clear()
entitlements.consume(org, "api_calls", 1, idempotency_key=f"bench-{os.getpid()}")
cache.set("bench:one-key", ("x", 1), None)

boolean = lambda: entitlements.check(org, "priority_support")  # noqa: E731
metered = lambda: entitlements.check(org, "api_calls")  # noqa: E731
assert boolean().allowed and metered().allowed
baseline = timed(lambda: cache.get("bench:one-key"), N)
results = {"boolean": timed(boolean, N), "metered": timed(metered, N)}

print(f"cache.get (baseline)      {baseline * 1e6:8.1f} µs")
worst = 0.0
for name, seconds in results.items():
    ratio = seconds / baseline
    worst = max(worst, ratio)
    print(f"cached check, {name:<11} {seconds * 1e6:8.1f} µs  {ratio:5.2f}x baseline")
print(f"budget {BUDGET:.1f}x: {'met' if worst <= BUDGET else 'not met'}")
