"""Webhook throughput through the whole stack: signature check, dj-stripe's storage and sync,
and Tally's receivers (which re-read each object from Stripe and update Tally's tables).

Baseline: the same events through dj-stripe with Tally's receivers disconnected, in the same
run, against the same in-process Stripe simulator. Budget: Tally's receivers cost at most 1.2x.
"""

import hashlib
import hmac
import json
import logging
import threading
import time

from _setup import setup_django

setup_django()

import stripe  # noqa: E402
from django.conf import settings  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from djstripe.models import Event  # noqa: E402
from djstripe.signals import WEBHOOK_SIGNALS  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from billing import catalog  # noqa: E402
from billing.catalog import catalog_apply, load_catalog  # noqa: E402
from billing.gateway.customers import customer_ensure  # noqa: E402
from billing.gateway.setup import stripe_webhook_endpoint_ensure  # noqa: E402
from billing.models import Plan  # noqa: E402
from billing.webhooks import registry  # noqa: E402
from billing.webhooks.receivers import queue_stripe_event  # noqa: E402
from stripe_sim.app import SimApp  # noqa: E402
from teams import services as team_services  # noqa: E402
from teams.models import User  # noqa: E402

BUDGET = 1.2  # Tally's receivers on top of dj-stripe alone
ROUNDS = 5
for noisy in ("werkzeug", "celery", "django.request"):
    logging.getLogger(noisy).setLevel(logging.ERROR)

sim = SimApp()
server = make_server("127.0.0.1", 0, sim, threaded=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sim_url = f"http://127.0.0.1:{server.server_port}"
stripe.api_base = sim_url


def scenario():
    """A month of a real subscription: checkout, renewals, a failed payment, a cancellation."""
    catalog_apply(load_catalog())
    catalog.catalog_push()
    endpoint = stripe_webhook_endpoint_ensure(site_url="http://testserver")
    user, _ = User.objects.get_or_create(email="bench-webhooks@example.com")
    # The simulator starts empty each run: a new organization gets a new customer.
    org = team_services.organization_create(owner=user, name="bench webhooks")
    from billing.gateway.client import stripe_client

    client = stripe_client()
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": int(time.time())})
    customer = customer_ensure(organization=org, test_clock=clock.id)
    card = client.v1.payment_methods.attach("pm_card_visa", {"customer": customer})
    client.v1.customers.update(customer, {"invoice_settings": {"default_payment_method": card.id}})
    items = [
        {"price": i.stripe_price_id, "quantity": 1}
        for i in Plan.objects.get(key="pro_monthly").line_items.all()
    ]
    sub = client.v1.subscriptions.create(
        {"customer": customer, "items": items, "metadata": {"tally_org_id": str(org.pk)}}
    )
    now = clock.frozen_time
    for month in range(1, 7):
        client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": now + month * 31 * 86_400})
    client.v1.subscriptions.update(sub.id, {"cancel_at_period_end": True})
    with sim.store.lock:
        events = [e for e in reversed(sim.store.all("event")) if e["type"] in registry.handled()]
    return endpoint, events


def signed(secret: str, payload: str) -> str:
    stamp = int(time.time())
    mac = hmac.new(secret.encode(), f"{stamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


def run(label: str, endpoint, events) -> float:
    client = Client()
    url = f"/stripe/webhook/{endpoint.djstripe_uuid}/"
    bodies = []
    for event in events:
        copy = dict(event, id=f"{event['id']}_{label}")  # fresh ids: dj-stripe dedupes by id
        bodies.append(json.dumps(copy))
    start = time.perf_counter()
    for body in bodies:
        response = client.post(
            url, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=signed(endpoint.secret, body)
        )
        assert response.status_code == 200, response.content
    return len(bodies) / (time.perf_counter() - start)


def disconnected(fn):
    for name in registry.handled():
        WEBHOOK_SIGNALS[name].disconnect(queue_stripe_event, sender=Event)
    try:
        return fn()
    finally:
        for name in registry.handled():
            WEBHOOK_SIGNALS[name].connect(queue_stripe_event, sender=Event)


with override_settings(STRIPE_API_HOST=sim_url, ALLOWED_HOSTS=["testserver"], CELERY_TASK_ALWAYS_EAGER=True):
    endpoint, events = scenario()
    print(f"{len(events)} events: {sorted({e['type'] for e in events})}")
    best_base = best_tally = 0.0
    for round_ in range(ROUNDS):
        best_base = max(best_base, disconnected(lambda r=round_: run(f"b{r}", endpoint, events)))
        best_tally = max(best_tally, run(f"t{round_}", endpoint, events))

ratio = best_base / best_tally
print(f"dj-stripe alone        {best_base:8.1f} events/s")
print(f"with Tally's receivers {best_tally:8.1f} events/s")
print(
    f"budget: webhooks <= {BUDGET}x dj-stripe alone: {ratio:.2f}x {'met' if ratio <= BUDGET else 'not met'}"
)
server.shutdown()
assert settings.configured
