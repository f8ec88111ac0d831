"""What the lifecycle machine drives: one organization, its Stripe customer on a test clock, and
the webhook deliveries Stripe owes Tally, which the machine hands over when and as often as it
chooses (delayed, reordered, duplicated).

Deliveries go through dj-stripe's real endpoint (signed, verified, stored once per event id),
with the on-commit work (Tally's handlers, seat syncs, cache invalidation) run as a commit
would. A replay calls Tally's handler for a stored event again, as a redelivered task does.
"""

import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime

import requests
import stripe
from django.test import Client, TestCase
from djstripe.models import Event

from billing.webhooks import dispatch
from stripe_sim.webhooks import payload_for, sign

# Catalog objects and Stripe's own bookkeeping: no handler of Tally's cares, and delivering them
# would only slow every example down.
IGNORED_PREFIXES = ("product.", "price.", "billing.meter", "webhook_endpoint.", "test_helpers.")

CARD_OK = "4242424242424242"
CARD_DECLINED = "4000000000000002"
CARD_DISPUTED = "4000000000000259"  # succeeds, then the cardholder disputes it


def committing():
    """Run the on-commit callbacks of what happens inside, as a real commit would."""
    return TestCase.captureOnCommitCallbacks(execute=True)


@dataclass
class Failure:
    """A handler that raised: I7."""

    what: str
    event_type: str
    event_id: str
    error: str


@dataclass
class Deliveries:
    sim: object
    endpoint: object
    client: Client = field(default_factory=lambda: Client(raise_request_exception=True))
    collected_seq: int = 0
    pending: list[dict] = field(default_factory=list)  # events Stripe has not delivered yet
    retry: list[str] = field(default_factory=list)  # delivered, handler failed on Stripe errors
    delivered: list[str] = field(default_factory=list)  # event ids, in delivery order
    types: dict[str, str] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)

    def collect(self) -> int:
        """Take the events Stripe created since the last look into the pending queue."""
        with self.sim.store.lock:
            fresh = [
                e for e in self.sim.store.objects.get("event", {}).values() if e["_seq"] > self.collected_seq
            ]
            fresh.sort(key=lambda e: e["_seq"])
            if fresh:
                self.collected_seq = fresh[-1]["_seq"]
            fresh = [dict(e) for e in fresh if not e["type"].startswith(IGNORED_PREFIXES)]
        for event in fresh:
            self.types[event["id"]] = event["type"]
        self.pending += fresh
        return len(fresh)

    @property
    def quiet(self) -> bool:
        return not self.pending and not self.retry

    def _post(self, event: dict) -> None:
        payload = payload_for(event)
        signature = sign(self.endpoint.secret, payload, int(time.time()))
        response = self.client.post(
            f"/stripe/webhook/{self.endpoint.djstripe_uuid}/",
            data=payload,
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=signature,
        )
        if response.status_code >= 300:
            raise AssertionError(f"the webhook endpoint answered {response.status_code}")

    def _run(self, what: str, event_id: str, call) -> None:
        try:
            with committing():
                call()
        except stripe.StripeError:
            # Stripe is down: the task retries later (the machine replays it once healthy).
            if event_id not in self.retry:
                self.retry.append(event_id)
        except Exception as error:
            self.failures.append(
                Failure(what, self.types.get(event_id, "?"), event_id, f"{error!r}\n{traceback.format_exc()}")
            )

    def deliver(self, index: int) -> None:
        event = self.pending.pop(index % len(self.pending))
        self._run("delivery", event["id"], lambda: self._post(event))
        self.delivered.append(event["id"])

    def deliver_all(self, order=None) -> None:
        """Deliver every pending event: in Stripe's order, or shuffled by `order` (a Random)."""
        while self.pending:
            self.deliver(order.randrange(len(self.pending)) if order else 0)

    def redeliver(self, index: int) -> None:
        """Stripe delivers an event again (dj-stripe stores an event id once)."""
        event_id = self.delivered[index % len(self.delivered)]
        with self.sim.store.lock:
            event = dict(self.sim.store.objects["event"][event_id])
        self._run("redelivery", event_id, lambda: self._post(event))

    def replay(self, index: int) -> None:
        """Tally's handler runs again for a stored event (a task delivered twice)."""
        event_id = self.delivered[index % len(self.delivered)]
        if not Event.objects.filter(id=event_id).exists():
            return
        self._run("replay", event_id, lambda: dispatch.handle(event_id))

    def retry_failed(self) -> None:
        """The task retries of handlers that met a Stripe outage."""
        waiting, self.retry = self.retry, []
        for event_id in waiting:
            if Event.objects.filter(id=event_id).exists():
                self._run("retry", event_id, lambda event_id=event_id: dispatch.handle(event_id))


def pay_checkout(url: str, card: str = CARD_OK) -> int:
    response = requests.post(
        url, data={"card_number": card, "email": "olivia@example.com"}, allow_redirects=False, timeout=30
    )
    return response.status_code


def clock_now(client: stripe.StripeClient, clock_id: str) -> datetime:
    frozen = client.v1.test_helpers.test_clocks.retrieve(clock_id).frozen_time
    return datetime.fromtimestamp(frozen, tz=UTC)
