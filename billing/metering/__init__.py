"""Metered usage: events ingested through the API, counted against the period's allowance, read
back on the usage page and reported to Stripe's meters.

Its public names, loaded from their module on first use (`common.lazy`); code inside the
package imports the module itself."""

from common.lazy import exports

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
    "api_call_count": "api_calls",
    "api_calls_flush": "api_calls",
    "meters_by_key": "ingest",
    "usage_ingest": "ingest",
    "MeterSpec": "counting",
    "Bar": "reading",
    "InvoicePreview": "reading",
    "MeterTotal": "reading",
    "PreviewLine": "reading",
    "daily_usage": "reading",
    "daily_usage_of": "reading",
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

__all__, __getattr__ = exports(__name__, _EXPORTS)
