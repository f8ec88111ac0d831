"""One simulator per test session on a free loopback port; state is reset for every test."""

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import stripe
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from stripe_sim.app import SimApp
from stripe_sim.store import Config

API_KEY = "sk_test_TallySimulatorTests0123456789"


@dataclass
class Sim:
    app: SimApp
    url: str

    @property
    def store(self):
        return self.app.store

    def events(self, **filters: Any) -> list[str]:
        """Event types in the order they happened (oldest first)."""
        with self.store.lock:
            events = list(reversed(self.store.all("event")))
        return [e["type"] for e in events if all(e.get(k) == v for k, v in filters.items())]


@dataclass
class Receiver:
    """A loopback webhook receiver that records what it gets and answers with ``status``."""

    url: str
    status: int = 200
    received: list[dict[str, Any]] = field(default_factory=list)

    def types(self) -> list[str]:
        return [json.loads(r["body"])["type"] for r in self.received]


def _serve(app: Any) -> tuple[Any, str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


@pytest.fixture(scope="session")
def _sim_server() -> Iterator[tuple[SimApp, str]]:
    app = SimApp()
    server, url = _serve(app)
    yield app, url
    server.shutdown()
    app.dispatcher.stop()


@pytest.fixture
def sim(_sim_server: tuple[SimApp, str]) -> Sim:
    app, url = _sim_server
    app.store.reset()
    # Synchronous webhook delivery: a test sees every delivery once the API call returns.
    app.store.config = Config(webhook_mode="sync")
    return Sim(app, url)


@pytest.fixture
def client(sim: Sim) -> stripe.StripeClient:
    return stripe.StripeClient(API_KEY, base_addresses={"api": sim.url}, max_network_retries=0)


@pytest.fixture(scope="session")
def _receiver_server() -> Iterator[tuple[Receiver, Any]]:
    receiver = Receiver(url="")

    @Request.application
    def app(request: Request) -> Response:
        receiver.received.append({"headers": dict(request.headers), "body": request.get_data(as_text=True)})
        return Response("ok" if receiver.status < 300 else "nope", status=receiver.status)

    server, url = _serve(app)
    receiver.url = f"{url}/webhooks/stripe/"
    yield receiver, server
    server.shutdown()


@pytest.fixture
def receiver(_receiver_server: tuple[Receiver, Any]) -> Receiver:
    receiver, _ = _receiver_server
    receiver.status = 200
    receiver.received.clear()
    return receiver
