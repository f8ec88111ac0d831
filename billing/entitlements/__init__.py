"""The entitlement engine: what an organization may do (a `Decision`), from its plan, add-ons and
grants, cached per organization; quota consumed and released on the period's counter.
`gating` turns decisions into HTTP answers, `ratelimit` the API's per-minute limits.

Its public names, loaded from their module on first use (`common.lazy`); code inside the
package imports the module itself."""

from common.lazy import exports

_EXPORTS = {
    "Decision": "decisions",
    "Effective": "decisions",
    "FeatureEntitlement": "decisions",
    "Reason": "decisions",
    "UNLIMITED": "decisions",
    "Upgrade": "decisions",
    "CACHE_TTL": "engine",
    "GENERATION_TTL": "engine",
    "UPGRADE_TTL": "upgrades",
    "USAGE_TTL": "engine",
    "VERSION_KEY": "engine",
    "catalog_version": "engine",
    "cheapest_upgrade": "upgrades",
    "check": "engine",
    "check_fresh": "engine",
    "effective_for": "engine",
    "entitlements_for": "engine",
    "invalidate": "engine",
    "invalidate_catalog": "engine",
    "low_quotas": "engine",
    "prefetch_keys": "engine",
    "register_counter": "counter_registry",
    "register_forget": "counter_registry",
    "usage_cached": "engine",
    "usage_recorded": "engine",
    "consume": "quota",
    "period_reset_at": "quota",
    "release": "quota",
    "grant_create": "grants",
    "grant_end": "grants",
    "subscription_set": "grants",
}

__all__, __getattr__ = exports(__name__, _EXPORTS)
