"""Per-seat billing: the seat limit, Stripe's quantity kept in step with the members, and what one
more seat costs.

The names below are the package's public surface, loaded from their module on first use so
that importing one module of the package never imports the others (no import cycles through
here). Code inside billing imports the module itself."""

from importlib import import_module

_EXPORTS = {
    "billable_seats": "counts",
    "seat_holders": "counts",
    "LOCK_TTL": "sync",
    "SeatSync": "sync",
    "SyncBusy": "sync",
    "seat_limit_guard": "sync",
    "seat_sync": "sync",
    "subscription_cancel_deleted": "sync",
    "SeatPreview": "preview",
    "seat_preview": "preview",
    "SCHEDULED_GRACE": "schedule",
    "organization_deleted": "schedule",
    "seat_sync_schedule": "schedule",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
