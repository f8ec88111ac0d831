"""The catalog: plans, add-ons, features and meters read from `config/catalog.toml` (`spec`),
applied to the database (`apply`) and pushed to Stripe (`sync`). The tier arithmetic and its
validation, which the models use too, are `billing.pricing`.

The names below are the package's public surface, loaded from their module on first use so
that importing one module of the package never imports the others (no import cycles through
here). Code inside billing imports the module itself."""

from importlib import import_module

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

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
