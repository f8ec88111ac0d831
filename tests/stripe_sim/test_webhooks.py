"""Events and webhook endpoints: Stripe-exact signatures, sync delivery, background retries."""

import json
import threading
import time

import stripe
from werkzeug.wrappers import Request, Response

from stripe_sim.webhooks import sign
from tests.stripe_sim import helpers
from tests.stripe_sim.conftest import Receiver, Sim, _serve


def _endpoint(client: stripe.StripeClient, receiver: Receiver) -> stripe.WebhookEndpoint:
    return client.v1.webhook_endpoints.create({"url": receiver.url, "enabled_events": ["*"]})


def test_it_signs_like_stripe() -> None:
    header = sign("whsec_test", '{"id": "evt_1"}', 1700000000)
    event = stripe.Webhook.construct_event('{"id": "evt_1"}', header, "whsec_test", tolerance=None)
    assert event.id == "evt_1"
    assert header.startswith("t=1700000000,v1=")


def test_it_returns_the_secret_only_on_creation(client: stripe.StripeClient, receiver: Receiver) -> None:
    endpoint = _endpoint(client, receiver)
    assert endpoint.secret.startswith("whsec_")
    assert "secret" not in client.v1.webhook_endpoints.retrieve(endpoint.id)


def test_it_delivers_signed_events_synchronously(client: stripe.StripeClient, receiver: Receiver) -> None:
    endpoint = _endpoint(client, receiver)
    cus = client.v1.customers.create({"email": "a@example.com"})
    assert receiver.types() == ["customer.created"]
    delivery = receiver.received[0]
    event = stripe.Webhook.construct_event(
        delivery["body"], delivery["headers"]["Stripe-Signature"], endpoint.secret
    )
    assert event.type == "customer.created"
    assert event.data.object.id == cus.id
    assert event["request"]["id"].startswith("req_")
    stored = client.v1.events.retrieve(event.id)
    assert stored.pending_webhooks == 0


def test_it_delivers_what_a_receiver_causes_after_its_own_delivery(
    client: stripe.StripeClient, sim: Sim
) -> None:
    """A receiver that calls the API while handling an event (dj-stripe re-reads objects inside
    its transaction) must not get the events that call causes while it still holds its locks:
    Stripe delivers them later, not inside the API call. Delivered nested, the second handler
    waits for the first one's lock until the delivery times out, is never retried in sync mode,
    and finishes in the background while the test already asserts."""
    sim.store.config.webhook_timeout = 2.0
    row_lock = threading.Lock()  # what a database row lock is to two webhook handlers
    handled: list[str] = []

    @Request.application
    def app(request: Request) -> Response:
        event = json.loads(request.get_data(as_text=True))
        if not row_lock.acquire(timeout=5):
            return Response("locked", status=500)
        try:
            handled.append(event["type"])
            if event["type"] == "customer.created":
                client.v1.customers.update(event["data"]["object"]["id"], {"name": "Acme"})
        finally:
            row_lock.release()
        return Response("ok")

    server, url = _serve(app)
    try:
        client.v1.webhook_endpoints.create(
            {"url": f"{url}/hook/", "enabled_events": ["customer.created", "customer.updated"]}
        )
        client.v1.customers.create({"email": "a@example.com"})
    finally:
        server.shutdown()
    assert handled == ["customer.created", "customer.updated"]
    attempts = [[a["status_code"] for a in d["attempts"]] for d in sim.store.deliveries]
    assert attempts == [[200], [200]]  # each delivered once, none timed out


def test_it_lists_events_by_type(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create({"email": "a@example.com"})
    client.v1.customers.update(cus.id, {"name": "Alice"})
    updated = client.v1.events.list({"type": "customer.updated"}).data
    assert [e.type for e in updated] == ["customer.updated"]
    assert updated[0].data.previous_attributes["name"] is None
    assert [e.type for e in client.v1.events.list({"type": "customer.*"}).data] == [
        "customer.updated",
        "customer.created",
    ]


def test_it_only_sends_enabled_events(client: stripe.StripeClient, receiver: Receiver) -> None:
    client.v1.webhook_endpoints.create(
        {"url": receiver.url, "enabled_events": ["invoice.paid", "customer.subscription.created"]}
    )
    price = helpers.price(client)
    cus = helpers.customer(client)
    client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": price.id}]})
    assert receiver.types() == ["customer.subscription.created", "invoice.paid"]


def test_it_retries_failed_deliveries_in_the_background(
    client: stripe.StripeClient, receiver: Receiver, sim: Sim
) -> None:
    sim.store.config.webhook_mode = "background"
    sim.store.config.webhook_backoff = [0.05, 0.05]
    receiver.status = 500
    _endpoint(client, receiver)
    client.v1.customers.create({"email": "a@example.com"})
    deadline = time.time() + 5
    while len(receiver.received) < 2 and time.time() < deadline:
        time.sleep(0.02)
    receiver.status = 200
    while time.time() < deadline:
        with sim.store.lock:
            if sim.store.deliveries[0]["status"] != "pending":
                break
        time.sleep(0.02)
    delivery = sim.store.deliveries[0]
    assert delivery["status"] == "succeeded"
    assert [a["status_code"] for a in delivery["attempts"]][-1] == 200
    assert delivery["attempts"][0]["status_code"] == 500
    ids = {json.loads(r["body"])["id"] for r in receiver.received}
    assert len(ids) == 1  # the same event, redelivered


def test_it_gives_up_after_the_backoff_schedule(
    client: stripe.StripeClient, receiver: Receiver, sim: Sim
) -> None:
    sim.store.config.webhook_backoff = []
    receiver.status = 400
    _endpoint(client, receiver)
    client.v1.customers.create({"email": "a@example.com"})
    assert sim.store.deliveries[0]["status"] == "failed"


def test_it_refuses_non_loopback_urls(client: stripe.StripeClient, sim: Sim) -> None:
    client.v1.webhook_endpoints.create({"url": "https://example.com/hook", "enabled_events": ["*"]})
    sim.store.config.webhook_backoff = []
    client.v1.customers.create({"email": "a@example.com"})
    attempt = sim.store.deliveries[0]["attempts"][0]
    assert "loopback" in attempt["error"]


# --- deliveries going wrong, per event type -------------------------------------------------


def _arm(sim, *faults) -> None:
    from werkzeug.test import Client

    response = Client(sim.app).post("/_sim/config", json={"webhook_faults": list(faults)})
    assert response.status_code == 200, response.data


def test_a_dropped_delivery_is_never_sent(client: stripe.StripeClient, receiver: Receiver, sim) -> None:
    _endpoint(client, receiver)
    _arm(sim, {"type": "customer.created", "action": "drop", "count": 1})
    client.v1.customers.create({"email": "a@example.com"})
    client.v1.customers.create({"email": "b@example.com"})
    assert receiver.types() == ["customer.created"]
    assert [d["status"] for d in sim.store.deliveries] == ["dropped", "succeeded"]


def test_a_delayed_delivery_arrives_when_released(
    client: stripe.StripeClient, receiver: Receiver, sim
) -> None:
    from werkzeug.test import Client

    _endpoint(client, receiver)
    _arm(sim, {"type": "customer.created", "action": "delay", "seconds": 3600})
    cus = client.v1.customers.create({"email": "a@example.com"})
    client.v1.customers.update(cus.id, {"name": "A"})
    assert receiver.types() == ["customer.updated"]  # the creation is hours late
    assert len(Client(sim.app).post("/_sim/deliveries/release").json) == 1
    assert receiver.types() == ["customer.updated", "customer.created"]


def test_a_duplicated_delivery_arrives_twice(client: stripe.StripeClient, receiver: Receiver, sim) -> None:
    _endpoint(client, receiver)
    _arm(sim, {"type": "customer.*", "action": "duplicate"})
    client.v1.customers.create({"email": "a@example.com"})
    assert receiver.types() == ["customer.created", "customer.created"]
    first, second = (json.loads(r["body"])["id"] for r in receiver.received)
    assert first == second  # one event, delivered twice


def test_a_reordered_delivery_arrives_after_the_next(
    client: stripe.StripeClient, receiver: Receiver, sim
) -> None:
    _endpoint(client, receiver)
    _arm(sim, {"type": "customer.created", "action": "reorder", "count": 1})
    cus = client.v1.customers.create({"email": "a@example.com"})
    client.v1.customers.update(cus.id, {"name": "A"})
    assert receiver.types() == ["customer.updated", "customer.created"]


def test_it_rejects_a_bad_webhook_fault(sim) -> None:
    from werkzeug.test import Client

    for bad in (
        [{"type": "x", "action": "explode"}],
        [{"action": "drop"}],
        "drop",
        [{"type": "x", "action": "delay", "seconds": -1}],
    ):
        response = Client(sim.app).post("/_sim/config", json={"webhook_faults": bad})
        assert response.status_code == 400
