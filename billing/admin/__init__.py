"""billing's admin, one module per concern. Django's autodiscovery imports this package, so
each module is imported here for its `admin.register` calls."""

from billing.admin import catalog, metering, operations, payments, push, subscriptions

__all__ = ["catalog", "metering", "operations", "payments", "push", "subscriptions"]
