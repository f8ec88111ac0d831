"""Per-seat billing: the seat limit, Stripe's quantity kept in step with the members, and what one
more seat costs.

Its public names, loaded from their module on first use (`common.lazy`); code inside the
package imports the module itself."""

from common.lazy import exports

_EXPORTS = {
    "billable_seats": "counts",
    "seat_holders": "counts",
    "LOCK_TTL": "sync",
    "SeatSync": "sync",
    "SyncBusy": "sync",
    "seat_limit_guard": "sync",
    "seat_sync": "sync",
    "subscription_cancel_deleted": "sync",
    "MAX_SEATS": "prepaid",
    "PrepaidSeatsPreview": "prepaid",
    "seats_prepaid_preview": "prepaid",
    "seats_prepaid_set": "prepaid",
    "prepaid_seats": "counts",
    "SeatPreview": "preview",
    "seat_preview": "preview",
    "SCHEDULED_GRACE": "schedule",
    "organization_deleted": "schedule",
    "seat_sync_schedule": "schedule",
    "seat_syncs_sweep": "schedule",
}

__all__, __getattr__ = exports(__name__, _EXPORTS)
