"""The catalog: plans, add-ons, features and meters read from `config/catalog.toml` (`spec`),
applied to the database (`apply`) and pushed to Stripe (`sync`). The tier arithmetic and its
validation, which the models use too, are `billing.pricing`.

Its public names, loaded from their module on first use (`common.lazy`); code inside the
package imports the module itself."""

from common.lazy import exports

_EXPORTS = {
    "CatalogError": "spec",
    "CatalogSpec": "spec",
    "DEFAULT_PATH": "spec",
    "DEFAULT_WARN_AT": "spec",
    "EntitlementSpec": "spec",
    "UNLIMITED": "spec",
    "load_catalog": "spec",
    "parse_catalog": "spec",
    "catalog_apply": "apply",
    "catalog_push": "sync",
    "catalog_sync": "sync",
}

__all__, __getattr__ = exports(__name__, _EXPORTS)
