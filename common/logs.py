"""Structured logs: one JSON object a line, each carrying the id of the request it came from.

The id is taken from the load balancer's `X-Request-ID` when it sent a sane one, or made up, and
answered in the same header (`teams.middleware.RequestId`). A task queued while a request runs
carries the id in its message headers and logs under it in the worker (`config/celery.py`), so
one grep follows a checkout from the click to the webhook's follow-up work.
"""

import contextvars
import json
import logging
import re
import uuid
from datetime import UTC, datetime

HEADER = "X-Request-ID"
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

# What a proxy may hand us: short, and nothing that could forge a second log field or line.
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def request_id_from(header: str | None) -> str:
    if header and _SANE.fullmatch(header):
        return header
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record, for any formatter to use."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", ""):
            record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", "") or request_id.get()
        if rid:
            line["request_id"] = rid
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)
