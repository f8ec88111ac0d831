"""/_sim/faults: Stripe answering errors for the next N matching calls, through the real SDK."""

import time

import pytest
import stripe
from werkzeug.test import Client

from tests.stripe_sim import helpers
from tests.stripe_sim.conftest import Sim


def _meter(client: stripe.StripeClient):
    return client.v1.billing.meters.create(
        {
            "display_name": "Tokens",
            "event_name": "tokens",
            "default_aggregation": {"formula": "sum"},
        }
    )


def _send(client, cus, identifier: str, value: int = 1):
    return client.v1.billing.meter_events.create(
        {
            "event_name": "tokens",
            "payload": {"stripe_customer_id": cus.id, "value": str(value)},
            "identifier": identifier,
            "timestamp": helpers.APRIL_1 + 10,
        }
    )


def _total(client, meter, cus) -> int:
    summaries = client.v1.billing.meters.event_summaries.list(
        meter.id, {"customer": cus.id, "start_time": helpers.APRIL_1, "end_time": helpers.APRIL_1 + 100}
    )
    return summaries.data[0].aggregated_value


def test_it_fails_the_next_n_matching_calls_then_recovers(client: stripe.StripeClient, sim: Sim) -> None:
    meter = _meter(client)
    cus = helpers.customer(client)
    web = Client(sim.app)
    armed = web.post("/_sim/faults", json={"path": "/v1/billing/meter_events", "status": 500, "count": 2})
    assert armed.status_code == 200 and armed.json[0]["count"] == 2

    for _ in range(2):
        with pytest.raises(stripe.APIError) as failed:
            _send(client, cus, "e1")
        assert failed.value.http_status == 500
    client.v1.customers.retrieve(cus.id)  # other routes are untouched
    _send(client, cus, "e1", 5)

    assert _total(client, meter, cus) == 5  # the failed calls changed nothing
    assert web.get("/_sim/faults").json == []


def test_a_401_fault_is_an_authentication_error(client: stripe.StripeClient, sim: Sim) -> None:
    _meter(client)
    cus = helpers.customer(client)
    Client(sim.app).post("/_sim/faults", json={"path": "/v1/billing/*", "status": 401, "method": "POST"})

    with pytest.raises(stripe.AuthenticationError) as failed:
        _send(client, cus, "e1")

    assert failed.value.http_status == 401
    assert failed.value.error.type == "invalid_request_error"
    assert "Invalid API Key" in failed.value.user_message
    _send(client, cus, "e1")  # spent after one call


def test_a_fault_after_the_work_loses_only_the_response(client: stripe.StripeClient, sim: Sim) -> None:
    meter = _meter(client)
    cus = helpers.customer(client)
    Client(sim.app).post(
        "/_sim/faults",
        json={"path": "/v1/billing/meter_events", "status": 503, "after": True, "should_retry": False},
    )

    with pytest.raises(stripe.APIError):
        _send(client, cus, "e1", 3)
    _send(client, cus, "e1", 3)  # the sender retries under the same identifier

    assert _total(client, meter, cus) == 3


def test_it_rejects_a_bad_fault_and_disarms_on_delete(sim: Sim) -> None:
    web = Client(sim.app)
    for bad in ({"path": "/nope"}, {"path": "/v1/x", "status": 200}, {"path": "/v1/x", "count": 0}, [1]):
        response = web.post("/_sim/faults", json=bad)
        assert response.status_code == 400 and response.json["error"]
    web.post("/_sim/faults", json={"faults": [{"path": "/v1/a"}, {"path": "/v1/b", "count": 3}]})
    assert [f["path"] for f in web.get("/_sim/faults").json] == ["/v1/a", "/v1/b"]
    assert web.delete("/_sim/faults").json == []
    assert sim.store.faults == []


# --- resets, latency, error rates -------------------------------------------------------------


def _requests(sim: Sim, path: str) -> list[int]:
    with sim.store.lock:
        return [r["status"] for r in sim.store.requests if r["path"] == path]


def test_a_reset_cuts_the_connection_and_changes_nothing(client, sim: Sim) -> None:
    meter = _meter(client)
    cus = helpers.customer(client)
    Client(sim.app).post("/_sim/faults", json={"path": "/v1/billing/meter_events", "kind": "reset"})

    with pytest.raises(stripe.APIConnectionError):
        _send(client, cus, "e1", 2)
    _send(client, cus, "e1", 2)

    assert _total(client, meter, cus) == 2
    assert _requests(sim, "/v1/billing/meter_events") == [0, 200]


def test_a_reset_after_the_work_is_replayed_under_the_idempotency_key(sim: Sim) -> None:
    retrying = stripe.StripeClient(
        "sk_test_TallySimulatorTests0123456789", base_addresses={"api": sim.url}, max_network_retries=1
    )
    Client(sim.app).post("/_sim/faults", json={"path": "/v1/customers", "kind": "reset", "after": True})

    created = retrying.v1.customers.create({"email": "a@example.com"}, {"idempotency_key": "cus-1"})

    with sim.store.lock:
        customers = list(sim.store.objects.get("customer", {}).values())
    assert [c["id"] for c in customers] == [created.id]  # made once, its answer lost once


def test_latency_past_the_clients_timeout_is_a_timeout_and_the_work_still_happens(sim: Sim) -> None:
    impatient = stripe.StripeClient(
        "sk_test_TallySimulatorTests0123456789",
        base_addresses={"api": sim.url},
        max_network_retries=1,
        http_client=stripe.RequestsClient(timeout=0.3),
    )
    Client(sim.app).post("/_sim/faults", json={"path": "/v1/customers", "kind": "latency", "latency_ms": 800})

    created = impatient.v1.customers.create({"email": "a@example.com"}, {"idempotency_key": "cus-1"})

    time.sleep(0.8)  # the slow first call ends after its retry (and replays what the retry made)
    with sim.store.lock:
        customers = list(sim.store.objects.get("customer", {}).values())
    assert [c["id"] for c in customers] == [created.id]


def test_a_rate_fails_a_repeatable_share_of_calls(client, sim: Sim) -> None:
    def outcomes() -> list[bool]:
        sim.store.faults.clear()
        Client(sim.app).post("/_sim/faults", json={"path": "/v1/customers*", "rate": 0.5, "seed": 7})
        results = []
        for _ in range(20):
            try:
                client.v1.customers.list()
                results.append(True)
            except stripe.APIError:
                results.append(False)
        return results

    first = outcomes()
    assert 3 <= first.count(False) <= 17
    assert outcomes() == first  # the same seed fails the same calls
    assert Client(sim.app).get("/_sim/faults").json[0]["rate"] == 0.5


def test_it_rejects_bad_kinds_rates_and_latencies(sim: Sim) -> None:
    web = Client(sim.app)
    for bad in (
        {"path": "/v1/x", "kind": "explode"},
        {"path": "/v1/x", "kind": "latency"},
        {"path": "/v1/x", "rate": 0},
        {"path": "/v1/x", "rate": 1.5},
        {"path": "/v1/x", "latency_ms": -1},
    ):
        response = web.post("/_sim/faults", json=bad)
        assert response.status_code == 400 and response.json["error"], bad
