"""Running the simulator: the snapshot file and the command line entry point."""

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import stripe

from stripe_sim.app import create_app
from tests.stripe_sim import helpers
from tests.stripe_sim.conftest import API_KEY, Receiver, Sim


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


def _start(*args: str) -> tuple[subprocess.Popen, list[str]]:
    """Start ``python -m stripe_sim`` on a free port; returns it and its lines up to 'listening'."""
    process = subprocess.Popen(
        [sys.executable, "-m", "stripe_sim", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    while not lines or not lines[-1].startswith("stripe_sim listening on "):
        line = process.stdout.readline()
        assert line, "the simulator exited before listening"
        lines.append(line.strip())
    return process, lines


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=10)


def _wait_for(receiver: Receiver, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(receiver.received) < count and time.monotonic() < deadline:
        time.sleep(0.02)


def test_it_registers_a_webhook_endpoint_from_the_command_line(tmp_path: Path, receiver: Receiver) -> None:
    state = str(tmp_path / "state.json")
    for run, secret in enumerate(["whsec_first", "whsec_second"]):
        # The second run finds the endpoint in the snapshot and takes the new secret.
        process, lines = _start("--state", state, "--webhook-url", receiver.url, "--webhook-secret", secret)
        try:
            assert lines[0] == f"webhook endpoint {receiver.url} secret {secret}"
            client = stripe.StripeClient(API_KEY, base_addresses={"api": lines[-1].split()[-1]})
            client.v1.customers.create({"email": f"run{run}@example.com"})
            _wait_for(receiver, run + 1)
        finally:
            _stop(process)
        delivery = receiver.received[run]
        event = stripe.Webhook.construct_event(
            delivery["body"], delivery["headers"]["Stripe-Signature"], secret
        )
        assert event.data.object.email == f"run{run}@example.com"
    assert len(receiver.received) == 2
    assert len(json.loads(Path(state).read_text())["objects"]["webhook_endpoint"]) == 1


def test_it_generates_a_secret_when_none_is_given(receiver: Receiver) -> None:
    process, lines = _start("--webhook-url", receiver.url)
    _stop(process)
    assert lines[0].startswith(f"webhook endpoint {receiver.url} secret whsec_")
