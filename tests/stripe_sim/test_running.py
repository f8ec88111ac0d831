"""Running the simulator: the snapshot file and the command line entry point."""

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import stripe

from stripe_sim.app import create_app
from tests.stripe_sim import helpers
from tests.stripe_sim.conftest import API_KEY, Sim


def test_it_restores_state_from_a_snapshot(client: stripe.StripeClient, sim: Sim, tmp_path: Path) -> None:
    price = helpers.price(client)
    cus = helpers.customer(client)
    sub = client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": price.id}]})
    path = tmp_path / "state.json"
    sim.store.save_to(str(path))
    restored = create_app(state_file=str(path))
    with restored.store.lock:
        assert restored.store.get("subscription", sub.id)["status"] == "active"
        assert len(restored.store.all("event")) == len(sim.store.all("event"))


def test_it_serves_on_loopback_from_the_command_line(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "stripe_sim", "--port", "0", "--state", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("stripe_sim listening on http://127.0.0.1:")
        url = line.split()[-1]
        client = stripe.StripeClient(API_KEY, base_addresses={"api": url}, max_network_retries=0)
        customer = client.v1.customers.create({"email": "a@example.com"})
        with urllib.request.urlopen(f"{url}/_sim/") as page:  # noqa: S310 - loopback
            assert "Stripe simulator" in page.read().decode()
    finally:
        process.terminate()
        process.wait(timeout=10)
    saved = json.loads(state.read_text())
    assert customer.id in saved["objects"]["customer"]
