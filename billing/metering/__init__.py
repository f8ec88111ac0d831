"""Metered usage: events ingested through the API, counted against the period's allowance, read
back on the usage page and reported to Stripe's meters.

The names below are the package's public surface, loaded from their module on first use so
that importing one module of the package never imports the others (no import cycles through
here). Code inside billing imports the module itself."""

from importlib import import_module

_EXPORTS = {
    "API_CALLS": "ingest",
    "EventResult": "ingest",
    "FUTURE_SKEW": "ingest",
    "IngestResult": "ingest",
    "LATE_GRACE": "ingest",
    "MAX_BATCH": "ingest",
    "MAX_ID": "ingest",
    "MAX_VALUE": "ingest",
    "METERS_TTL": "ingest",
    "Status": "ingest",
    "api_call_record": "ingest",
    "meters_by_key": "ingest",
    "usage_ingest": "ingest",
    "MeterSpec": "counting",
    "Bar": "reading",
    "InvoicePreview": "reading",
    "MeterTotal": "reading",
    "PreviewLine": "reading",
    "daily_usage": "reading",
    "events_of": "reading",
    "invoice_preview": "reading",
    "meter_aggregate": "reading",
    "meter_totals": "reading",
    "LEASE": "reporting",
    "MAX_ATTEMPTS": "reporting",
    "RETRY_CEILING": "reporting",
    "ReportOutcome": "reporting",
    "backoff": "reporting",
    "meter_report_record": "reporting",
    "meter_report_retry": "reporting",
    "usage_report_prepare": "reporting",
    "usage_report_run": "reporting",
    "usage_report_send": "reporting",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
