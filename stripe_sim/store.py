"""In-memory state: every object by kind and id, events, deliveries, idempotency records.

One ``RLock`` guards everything: the server is threaded, and Stripe's own semantics (a request
either happened or not) are easiest to keep by running each API request under the lock.
"""

import contextlib
import copy
import json
import os
import secrets
import string
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from stripe_sim.errors import missing

_ALPHABET = string.ascii_letters + string.digits

# Stripe's id prefixes; also how an id found in a field is turned back into its kind for expand.
PREFIXES: dict[str, str] = {
    "customer": "cus",
    "product": "prod",
    "price": "price",
    "payment_method": "pm",
    "setup_intent": "seti",
    "payment_intent": "pi",
    "charge": "ch",
    "refund": "re",
    "dispute": "dp",
    "balance_transaction": "txn",
    "subscription": "sub",
    "subscription_item": "si",
    "invoice": "in",
    "invoiceitem": "ii",
    "invoice_payment": "inpay",
    "checkout.session": "cs_test",
    "billing_portal.session": "bps",
    "billing_portal.configuration": "bpc",
    "billing.meter": "mtr",
    "event": "evt",
    "webhook_endpoint": "we",
    "test_helpers.test_clock": "clock",
    "promotion_code": "promo",
    "discount": "di",
    "tax_rate": "txr",
    "tax_id": "txi",
}
_KIND_BY_PREFIX = {prefix: kind for kind, prefix in PREFIXES.items()}

# Human names used in "No such customer: 'cus_x'" messages.
NAMES = {
    "test_helpers.test_clock": "test_clock",
    "checkout.session": "checkout.session",
    "billing_portal.configuration": "configuration",
    "billing.meter": "billing.meter",
    "invoiceitem": "invoiceitem",
    "promotion_code": "promotion code",
}


def kind_of(object_id: str) -> str | None:
    if object_id.startswith("cs_test_"):
        return "checkout.session"
    prefix = object_id.split("_", 1)[0]
    return _KIND_BY_PREFIX.get(prefix)


@dataclass
class Config:
    """Behaviour knobs a test or the demo may change (``POST /_sim/config``)."""

    # Days after the first failed renewal payment at which it is retried (Stripe's smart retries
    # settle on a similar schedule); after the last one the subscription is ended.
    retry_days: list[int] = field(default_factory=lambda: [3, 5, 7])
    # What happens when retries are exhausted: "cancel" (status canceled) or "unpaid".
    after_retries: str = "cancel"
    # "sync": deliver webhooks before the API response returns (deterministic, for tests);
    # "background": a thread delivers and retries with back-off, as Stripe does.
    webhook_mode: str = "background"
    # Seconds between webhook delivery attempts after a failure (Stripe uses hours; a demo can't).
    webhook_backoff: list[float] = field(default_factory=lambda: [1, 5, 30, 120, 600])
    webhook_timeout: float = 10.0
    # Deliveries go to loopback URLs only unless this is set (the simulator is a local tool).
    allow_remote_webhooks: bool = False
    # Stripe failing for a while: see ``stripe_sim.outage`` (None: healthy).
    outage: dict[str, Any] | None = None
    # Deliveries dropped, delayed, duplicated or reordered per event type: see
    # ``stripe_sim.delivery_faults``.
    webhook_faults: list[dict[str, Any]] = field(default_factory=list)


class Store:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.config = Config()
        # Where the simulator is served, for the URLs of its hosted pages (set per request).
        self.base_url = ""
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.objects: dict[str, dict[str, dict[str, Any]]] = {}
            self.seq = 0
            # Seconds added to wall time for objects on no test clock (``POST /_sim/advance``).
            self.offset = 0
            self.idempotency: dict[tuple[str, str], dict[str, Any]] = {}
            self.deliveries: list[dict[str, Any]] = []
            self.requests: list[dict[str, Any]] = []
            # Errors to answer instead of the real response (``/_sim/faults``), oldest first.
            self.faults: list[dict[str, Any]] = []
            # Events waiting to be handed to the webhook dispatcher once the lock is released.
            self.outbox: list[str] = []
            # The API request being handled, recorded on the events it causes.
            self.current_request: dict[str, Any] = {"id": None, "idempotency_key": None}
            # Each object as the last event about it showed it: a change since is an update.
            self.snapshots: dict[str, dict[str, Any]] = {}

    # --- ids and time ---------------------------------------------------------------------------

    def new_id(self, kind_or_prefix: str, length: int = 24) -> str:
        prefix = PREFIXES.get(kind_or_prefix, kind_or_prefix)
        if prefix == "cs_test":
            length = 58
        return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def now(self, clock_id: str | None = None) -> int:
        """Wall time (moved on by ``offset``), or the frozen time of a test clock (objects on a
        clock live in its time)."""
        if clock_id:
            clock = self.objects.get("test_helpers.test_clock", {}).get(clock_id)
            if clock is not None:
                return int(clock["frozen_time"])
        return int(time.time()) + self.offset

    def clock_for_customer(self, customer_id: str | None) -> str | None:
        if not customer_id:
            return None
        customer = self.objects.get("customer", {}).get(customer_id)
        return customer.get("test_clock") if customer else None

    def now_for_customer(self, customer_id: str | None) -> int:
        return self.now(self.clock_for_customer(customer_id))

    # --- objects --------------------------------------------------------------------------------

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj["_seq"] = self.next_seq()
        self.objects.setdefault(obj["object"], {})[obj["id"]] = obj
        return obj

    def get(self, kind: str, object_id: Any, param: str = "id") -> dict[str, Any]:
        obj = self.find(kind, object_id)
        if obj is None:
            raise missing(NAMES.get(kind, kind), str(object_id), param)
        return obj

    def find(self, kind: str, object_id: Any) -> dict[str, Any] | None:
        if not isinstance(object_id, str):
            return None
        obj = self.objects.get(kind, {}).get(object_id)
        if obj is None or obj.get("_deleted"):
            return None
        return obj

    def find_any(self, object_id: str) -> dict[str, Any] | None:
        kind = kind_of(object_id)
        return self.find(kind, object_id) if kind else None

    def find_expandable(self, object_id: str, field: str) -> dict[str, Any] | None:
        """What an id in ``field`` expands to. Coupon ids have no prefix; a discount that ended
        and a coupon that was deleted still expand where invoices name them."""
        kind = kind_of(object_id) or ("coupon" if field == "coupon" else None)
        if kind in ("coupon", "discount"):
            return self.objects.get(kind, {}).get(object_id)
        return self.find(kind, object_id) if kind else None

    def all(self, kind: str) -> list[dict[str, Any]]:
        """Live objects of a kind, newest first (Stripe's list order)."""
        items = [o for o in self.objects.get(kind, {}).values() if not o.get("_deleted")]
        return sorted(items, key=lambda o: (o.get("created", 0), o["_seq"]), reverse=True)

    def delete(self, obj: dict[str, Any]) -> None:
        obj["_deleted"] = True

    @contextlib.contextmanager
    def scratch(self) -> Iterator[None]:
        """Run a what-if (an invoice preview) with the real code paths, then roll it all back."""
        with self.lock:
            saved = copy.deepcopy((self.objects, self.seq, self.deliveries, self.outbox, self.snapshots))
            try:
                yield
            finally:
                self.objects, self.seq, self.deliveries, self.outbox, self.snapshots = saved

    # --- snapshot -------------------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        with self.lock:
            return {
                "objects": self.objects,
                "seq": self.seq,
                "offset": self.offset,
                "deliveries": self.deliveries[-500:],
            }

    def load(self, data: dict[str, Any]) -> None:
        with self.lock:
            self.reset()
            self.objects = data.get("objects", {})
            self.seq = int(data.get("seq", 0))
            self.offset = int(data.get("offset", 0))
            self.deliveries = data.get("deliveries", [])

    def save_to(self, path: str) -> None:
        """Write atomically, so a crash mid-write never leaves a truncated snapshot."""
        payload = json.dumps(self.dump())
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".stripe_sim.", suffix=".json")
        with os.fdopen(fd, "w") as handle:
            handle.write(payload)
        os.replace(tmp, path)

    def load_from(self, path: str) -> bool:
        if not os.path.exists(path):
            return False
        with open(path) as handle:
            self.load(json.load(handle))
        return True
