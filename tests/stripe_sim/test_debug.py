"""The debug surface beside the API: /_sim/config, /_sim/deliveries and resending a delivery."""

import json
from dataclasses import asdict

import stripe
from werkzeug.test import Client

from stripe_sim.store import Config
from tests.stripe_sim.conftest import Receiver, Sim


def test_it_reads_and_changes_the_config(sim: Sim) -> None:
    web = Client(sim.app)
    assert web.get("/_sim/config").json == asdict(Config(webhook_mode="sync"))

    changed = web.post("/_sim/config", json={"retry_days": [1, 2], "after_retries": "unpaid", "nope": 1}).json

    assert changed["retry_days"] == [1, 2]
    assert changed["after_retries"] == "unpaid"
    assert "nope" not in changed
    assert sim.store.config.retry_days == [1, 2]
    assert web.get("/_sim/config").json == changed


def test_it_lists_deliveries_with_their_attempts(
    client: stripe.StripeClient, sim: Sim, receiver: Receiver
) -> None:
    client.v1.webhook_endpoints.create({"url": receiver.url, "enabled_events": ["customer.created"]})
    cus = client.v1.customers.create({"email": "a@example.com"})

    [delivery] = Client(sim.app).get("/_sim/deliveries").json

    event = json.loads(receiver.received[0]["body"])
    assert event["data"]["object"]["id"] == cus.id
    assert delivery["event"] == event["id"]
    assert delivery["type"] == "customer.created"
    assert delivery["url"] == receiver.url
    assert delivery["status"] == "succeeded"
    assert [a["status_code"] for a in delivery["attempts"]] == [200]
    assert not [key for key in delivery if key.startswith("_")]


def test_it_resends_a_delivery_as_a_new_one(
    client: stripe.StripeClient, sim: Sim, receiver: Receiver
) -> None:
    client.v1.webhook_endpoints.create({"url": receiver.url, "enabled_events": ["*"]})
    client.v1.customers.create({"email": "a@example.com"})
    web = Client(sim.app)
    [first] = web.get("/_sim/deliveries").json

    again = web.post(f"/_sim/deliveries/{first['id']}/resend").json

    assert again["id"] != first["id"]
    assert again["event"] == first["event"]
    assert again["status"] == "succeeded"
    assert [json.loads(r["body"])["id"] for r in receiver.received] == [first["event"]] * 2
    assert len(web.get("/_sim/deliveries").json) == 2
    assert web.post("/_sim/deliveries/whdel_missing/resend").status_code == 404


def test_the_debug_page_resends_and_returns(
    client: stripe.StripeClient, sim: Sim, receiver: Receiver
) -> None:
    client.v1.webhook_endpoints.create({"url": receiver.url, "enabled_events": ["*"]})
    client.v1.customers.create({"email": "a@example.com"})
    web = Client(sim.app)
    [first] = web.get("/_sim/deliveries").json
    assert f"/_sim/deliveries/{first['id']}/resend" in web.get("/_sim/").text

    response = web.post(f"/_sim/deliveries/{first['id']}/resend", data={"back": "1"})

    assert response.status_code == 303
    assert response.headers["Location"] == "/_sim/"
    assert len(receiver.received) == 2
