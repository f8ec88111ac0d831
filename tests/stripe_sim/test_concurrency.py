"""Many SDK clients at once: the threaded server runs each request whole, under one lock."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import stripe

from tests.stripe_sim.conftest import API_KEY, Receiver, Sim

THREADS = 8
EACH = 25


def test_it_keeps_counts_exact_under_concurrent_requests(sim: Sim, receiver: Receiver) -> None:
    stripe.StripeClient(API_KEY, base_addresses={"api": sim.url}).v1.webhook_endpoints.create(
        {"url": receiver.url, "enabled_events": ["customer.created"]}
    )
    start = threading.Barrier(THREADS)

    def work(thread: int) -> tuple[list[str], str]:
        client = stripe.StripeClient(API_KEY, base_addresses={"api": sim.url}, max_network_retries=0)
        start.wait()
        # Every thread races to be first with the same key: exactly one of them creates.
        shared = client.v1.customers.create({"email": "shared@example.com"}, {"idempotency_key": "shared"})
        ids = []
        for n in range(EACH):
            params: dict = {"email": f"c{thread}-{n}@example.com"}
            key = f"create-{thread}-{n}"
            created = client.v1.customers.create(params, {"idempotency_key": key})
            assert client.v1.customers.create(params, {"idempotency_key": key}).id == created.id
            ids.append(created.id)
        return ids, shared.id

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(work, range(THREADS)))

    ids = [i for thread_ids, _ in results for i in thread_ids]
    assert len(set(ids)) == THREADS * EACH
    assert len({shared for _, shared in results}) == 1
    expected = THREADS * EACH + 1
    with sim.store.lock:
        assert len(sim.store.all("customer")) == expected
        assert len(sim.store.all("event")) == expected
        assert [d["status"] for d in sim.store.deliveries] == ["succeeded"] * expected
    delivered = [json.loads(r["body"])["data"]["object"]["id"] for r in receiver.received]
    assert sorted(delivered) == sorted([*ids, results[0][1]])
