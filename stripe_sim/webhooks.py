"""Signed webhook deliveries, synchronous (for tests) or from a background thread with back-off.

Deliveries run outside the store lock: a receiver (dj-stripe) typically calls back into the API
to re-read the event, and that request must not wait on the delivery that caused it.

Sync deliveries go one at a time, in event order, as Stripe's do: what a receiver's own API call
causes is delivered after that receiver has answered, not inside its call. Delivered inside it,
the second handler would wait on the first one's database locks until the delivery timed out
(and sync mode never retries), then finish in the background while the test already asserts.
"""

import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from stripe_sim.render import public
from stripe_sim.store import Store

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def sign(secret: str, payload: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header value, computed exactly as Stripe does."""
    signed = f"{timestamp}.{payload}".encode()
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def payload_for(event: dict[str, Any]) -> str:
    return json.dumps(public(event), indent=2)


class Dispatcher:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        # Held by the one thread delivering synchronously; a flush from inside a delivery (a
        # receiver calling the API) leaves its events to that thread.
        self._sync_delivering = threading.Lock()

    # --- entry points ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Called after each request, outside the lock: deliver now, or wake the thread."""
        with self.store.lock:
            self.store.outbox.clear()
            sync = self.store.config.webhook_mode == "sync"
        if sync:
            self._deliver_sync()
        else:
            self.start()
            with self._wake:
                self._wake.notify_all()

    def _deliver_sync(self) -> None:
        while self._sync_delivering.acquire(blocking=False):
            try:
                self.deliver_due(only_first_attempts=True)
            finally:
                self._sync_delivering.release()
            # A flush that found the lock taken just before the release left its events to us.
            if not self._first_attempts_due():
                return

    def _first_attempts_due(self) -> bool:
        with self.store.lock:
            now = time.time()
            return any(
                d["status"] == "pending"
                and not d["attempts"]
                and not d.get("_in_flight")
                and d["next_attempt_at"] <= now
                for d in self.store.deliveries
            )

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="stripe-sim-webhooks")
            self._thread.daemon = True
            self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        with self._wake:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping:
            self.deliver_due(only_first_attempts=False)
            with self._wake:
                self._wake.wait(timeout=self._seconds_to_next())

    def _seconds_to_next(self) -> float:
        with self.store.lock:
            pending = [d["next_attempt_at"] for d in self.store.deliveries if d["status"] == "pending"]
        if not pending:
            return 1.0
        return max(0.05, min(1.0, min(pending) - time.time()))

    # --- delivering -----------------------------------------------------------------------------

    def deliver_due(self, *, only_first_attempts: bool) -> int:
        """Attempt every due pending delivery once, in event order; returns how many ran."""
        ran = 0
        while True:
            job = self._claim(only_first_attempts)
            if job is None:
                return ran
            delivery, url, headers, body = job
            status, response_body, error = self._post(url, headers, body)
            self._record(delivery, status, response_body, error)
            ran += 1

    def _claim(self, only_first_attempts: bool) -> tuple[dict[str, Any], str, dict, bytes] | None:
        with self.store.lock:
            now = time.time()
            for delivery in self.store.deliveries:
                if delivery["status"] != "pending" or delivery["next_attempt_at"] > now:
                    continue
                if delivery.get("_in_flight"):
                    continue
                if only_first_attempts and delivery["attempts"]:
                    continue
                event = self.store.find("event", delivery["event"])
                endpoint = self.store.objects.get("webhook_endpoint", {}).get(delivery["endpoint"])
                if event is None or endpoint is None or endpoint.get("_deleted"):
                    delivery["status"] = "abandoned"
                    continue
                delivery["_in_flight"] = True
                payload = payload_for(event)
                timestamp = int(time.time())
                headers = {
                    "Content-Type": "application/json; charset=utf-8",
                    "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                    "Stripe-Signature": sign(endpoint["_secret"], payload, timestamp),
                }
                return delivery, endpoint["url"], headers, payload.encode()
        return None

    def _post(self, url: str, headers: dict, body: bytes) -> tuple[int | None, str, str | None]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            return None, "", f"unsupported URL scheme: {parts.scheme}"
        if parts.hostname not in LOOPBACK_HOSTS and not self.store.config.allow_remote_webhooks:
            return None, "", "refused: the simulator delivers to loopback URLs only"
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(  # noqa: S310 - scheme checked above
                request, timeout=self.store.config.webhook_timeout
            ) as response:
                return response.status, response.read(2000).decode(errors="replace"), None
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(2000).decode(errors="replace"), None
        except (OSError, ValueError) as exc:
            return None, "", str(exc)

    def _record(self, delivery: dict[str, Any], status: int | None, body: str, error: str | None) -> None:
        with self.store.lock:
            delivery.pop("_in_flight", None)
            delivery["attempts"].append(
                {"at": int(time.time()), "status_code": status, "body": body, "error": error}
            )
            event = self.store.find("event", delivery["event"])
            if status is not None and 200 <= status < 300:
                delivery["status"] = "succeeded"
                if event is not None:
                    event["pending_webhooks"] = max(0, event["pending_webhooks"] - 1)
                return
            backoff = self.store.config.webhook_backoff
            tries = len(delivery["attempts"])
            if tries > len(backoff):
                delivery["status"] = "failed"
                return
            delivery["next_attempt_at"] = time.time() + backoff[tries - 1]
