"""Stripe failing for a while: `/_sim/config {"outage": ...}` answers matching API requests
with Stripe's error shape until it is switched off or used up."""

import pytest
import requests
import stripe

from tests.stripe_sim.conftest import API_KEY


def _configure(sim, outage) -> None:
    requests.post(f"{sim.url}/_sim/config", json={"outage": outage}, timeout=10).raise_for_status()


def test_it_fails_matching_requests_until_switched_off(sim, client):
    _configure(sim, {"status": 503, "paths": ["/v1/customers"]})
    with pytest.raises(stripe.APIError) as failed:
        client.v1.customers.create({"email": "alice@example.com"})
    assert failed.value.http_status == 503
    assert client.v1.products.create({"name": "Pro"}).id.startswith("prod_")  # other paths work
    assert sim.store.all("customer") == []  # nothing was created
    _configure(sim, None)
    assert client.v1.customers.create({"email": "alice@example.com"}).id.startswith("cus_")


def test_a_counted_outage_is_used_up_and_can_fail_authentication(sim, client):
    _configure(sim, {"status": 401, "remaining": 1})
    with pytest.raises(stripe.AuthenticationError):
        client.v1.customers.list()
    assert client.v1.customers.list().data == []


def test_the_sdk_is_told_not_to_retry(sim):
    _configure(sim, {"status": 500})
    response = requests.get(f"{sim.url}/v1/customers", auth=(API_KEY, ""), timeout=10)
    assert response.status_code == 500
    assert response.headers["Stripe-Should-Retry"] == "false"
    assert response.json()["error"]["type"] == "api_error"
    _configure(sim, None)
