"""Faults a test or the demo asks for: Stripe failing for the next N matching API calls.

``POST /_sim/faults`` with ``{"path": "/v1/billing/meter_events", "status": 500, "count": 3}``
makes the next three matching calls answer with Stripe's error for that status. ``path`` is an
exact path, or a prefix ending in ``*``; ``method`` (default: any) narrows it. ``after: true``
lets the request take effect first and loses only the response, as a timeout after Stripe did
the work would; ``should_retry`` sets Stripe's ``Stripe-Should-Retry`` header. ``GET`` lists the
faults still armed; ``DELETE`` disarms them all.

``kind`` says how the call fails: ``error`` (the default: Stripe's error for ``status``),
``reset`` (the connection is cut without an answer, before the work or, with ``after``, once
it is done) or ``latency`` (the call succeeds ``latency_ms`` late; past the client's timeout
it is a timeout, and the work is still done, as at Stripe). ``latency_ms`` also delays an error
or a reset. ``rate`` (0-1) fails only that share of the matching calls, drawn from a generator
seeded by ``seed`` so that a run can be repeated; with a rate, ``count`` defaults to unlimited.
"""

import contextlib
import random
import socket
import struct
from typing import Any

from stripe_sim.errors import StripeError

# Stripe's error type (and code) for each status a fault may answer with; the SDK turns the
# status into its exception class (401 AuthenticationError, 429 RateLimitError, 5xx APIError).
_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "The request was invalid (simulated fault)."),
    401: ("invalid_request_error", None, "Invalid API Key provided: sk_test_****fault"),
    402: ("card_error", "card_declined", "Your card was declined."),
    403: (
        "invalid_request_error",
        None,
        "The provided key does not have the required permissions for this endpoint.",
    ),
    404: ("invalid_request_error", "resource_missing", "No such object (simulated fault)."),
    409: ("invalid_request_error", "lock_timeout", "This object is being changed by another request."),
    429: (
        "invalid_request_error",
        "rate_limit",
        "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
    ),
}
_SERVER_ERROR = ("api_error", None, "An unknown error occurred (simulated fault).")


KINDS = ("error", "reset", "latency")
UNLIMITED = 10**12


class FaultSpecError(ValueError):
    pass


def parse(raw: Any) -> dict[str, Any]:
    """A validated fault from the control's JSON body."""
    if not isinstance(raw, dict):
        raise FaultSpecError("a fault is a JSON object")
    path = raw.get("path")
    if not isinstance(path, str) or not path.startswith("/v1/"):
        raise FaultSpecError("path: an API path starting with /v1/ (a trailing * matches a prefix)")
    status = raw.get("status", 500)
    if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
        raise FaultSpecError("status: an HTTP error status, 400-599")
    count = raw.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise FaultSpecError("count: how many calls fail, at least 1")
    method = raw.get("method")
    if method is not None and method not in ("GET", "POST", "DELETE"):
        raise FaultSpecError("method: GET, POST or DELETE (omit for any)")
    should_retry = raw.get("should_retry")
    if should_retry is not None and not isinstance(should_retry, bool):
        raise FaultSpecError("should_retry: true or false")
    message = raw.get("message")
    if message is not None and not isinstance(message, str):
        raise FaultSpecError("message: a string")
    kind = raw.get("kind", "error")
    if kind not in KINDS:
        raise FaultSpecError("kind: error, reset or latency")
    latency_ms = raw.get("latency_ms", 0)
    if not isinstance(latency_ms, int) or isinstance(latency_ms, bool) or not 0 <= latency_ms <= 120_000:
        raise FaultSpecError("latency_ms: milliseconds, 0-120000")
    if kind == "latency" and not latency_ms:
        raise FaultSpecError("latency_ms: how late a latency fault answers")
    rate = raw.get("rate")
    if rate is not None and (
        not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 < rate <= 1
    ):
        raise FaultSpecError("rate: the share of matching calls that fail, above 0 and at most 1")
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise FaultSpecError("seed: an integer")
    if rate is not None and "count" not in raw:
        count = UNLIMITED
    return {
        "kind": kind,
        "latency_ms": latency_ms,
        "rate": rate,
        "seed": seed,
        "_rng": random.Random(seed),
        "path": path,
        "method": method,
        "status": status,
        "count": count,
        "after": bool(raw.get("after", False)),
        "should_retry": should_retry,
        "message": message,
        "used": 0,
    }


def _matches(fault: dict[str, Any], method: str, path: str) -> bool:
    if fault["method"] and fault["method"] != method:
        return False
    pattern = fault["path"]
    if pattern.endswith("*"):
        return path.startswith(pattern[:-1])
    return path.rstrip("/") == pattern.rstrip("/")


def take(faults: list[dict[str, Any]], method: str, path: str) -> dict[str, Any] | None:
    """The first armed fault matching this call, counted as used (and disarmed when spent)."""
    for fault in faults:
        if _matches(fault, method, path):
            if fault["rate"] is not None and fault["_rng"].random() >= fault["rate"]:
                continue  # this call is spared; a later fault may still match it
            fault["used"] += 1
            if fault["used"] >= fault["count"]:
                faults.remove(fault)
            return fault
    return None


def error_of(fault: dict[str, Any]) -> StripeError:
    status = fault["status"]
    type_, code, message = _ERRORS.get(status, _SERVER_ERROR if status >= 500 else _ERRORS[400])
    return StripeError(status, type_, fault["message"] or message, code=code)


def headers_of(fault: dict[str, Any]) -> dict[str, str]:
    if fault["should_retry"] is None:
        return {}
    return {"Stripe-Should-Retry": "true" if fault["should_retry"] else "false"}


def public(fault: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fault.items() if not k.startswith("_")}


def reset_connection(environ: dict) -> None:
    """Cut the client's connection without an answer, and stop the server from answering on it.
    (The server's file objects keep the socket open, so it is shut down rather than closed.)"""
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RDWR)
    raise ConnectionResetError("connection reset by the simulator (injected fault)")
