"""The simulator delivers signed events to dj-stripe's own endpoint on a live server, registered by
`stripe_webhook_endpoint_ensure`; dj-stripe verifies, stores and processes each event once."""

import json
import time
import urllib.error
import urllib.request

import pytest
import stripe
from django.core.management import call_command
from djstripe import models as djstripe_models
from djstripe.signals import WEBHOOK_SIGNALS

from billing.gateway.setup import stripe_webhook_endpoint_ensure
from stripe_sim.app import SimApp
from tests.factories import OrganizationFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sim(stripe_sim: SimApp) -> SimApp:
    return stripe_sim


@pytest.fixture
def client(sim: SimApp, settings) -> stripe.StripeClient:
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": stripe.api_base}, max_network_retries=0
    )


@pytest.fixture
def endpoint(sim: SimApp, live_server) -> djstripe_models.WebhookEndpoint:
    return stripe_webhook_endpoint_ensure(site_url=live_server.url)


def _sim_endpoints(sim: SimApp) -> list[dict]:
    with sim.store.lock:
        return sim.store.all("webhook_endpoint")


def _deliveries(sim: SimApp) -> list[dict]:
    with sim.store.lock:
        return [dict(d) for d in sim.store.deliveries]


def _subscription(client: stripe.StripeClient, **customer: object) -> stripe.Subscription:
    product = client.v1.products.create({"name": "Team"})
    price = client.v1.prices.create(
        {"product": product.id, "currency": "usd", "unit_amount": 1200, "recurring": {"interval": "month"}}
    )
    cus = client.v1.customers.create({"email": "alice@example.com", **customer})  # type: ignore[arg-type]
    pm = client.v1.payment_methods.attach("pm_card_visa", {"customer": cus.id})
    client.v1.customers.update(cus.id, {"invoice_settings": {"default_payment_method": pm.id}})
    return client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": price.id}]})


# --- registering the endpoint -----------------------------------------------------------------


def test_it_registers_the_endpoint_once(sim: SimApp, live_server) -> None:
    first = stripe_webhook_endpoint_ensure(site_url=live_server.url)
    again = stripe_webhook_endpoint_ensure(site_url=live_server.url)

    assert again.pk == first.pk
    assert first.url == f"{live_server.url}/stripe/webhook/{first.djstripe_uuid}/"
    [remote] = _sim_endpoints(sim)
    assert remote["id"] == first.id
    assert remote["_secret"] == again.secret
    assert remote["enabled_events"] == ["*"]
    assert djstripe_models.WebhookEndpoint.objects.count() == 1
    assert first.djstripe_owner_account is not None
    assert djstripe_models.APIKey.objects.get().djstripe_owner_account == first.djstripe_owner_account


def test_it_replaces_an_endpoint_whose_secret_is_lost(sim: SimApp, live_server) -> None:
    lost = stripe_webhook_endpoint_ensure(site_url=live_server.url)
    djstripe_models.WebhookEndpoint.objects.all().delete()

    new = stripe_webhook_endpoint_ensure(site_url=live_server.url)

    assert new.id != lost.id
    assert [e["id"] for e in _sim_endpoints(sim)] == [new.id]


def test_it_forgets_an_endpoint_that_stripe_no_longer_has(sim: SimApp, live_server) -> None:
    gone = stripe_webhook_endpoint_ensure(site_url=live_server.url)
    sim.store.reset()  # the simulator started without its state file

    new = stripe_webhook_endpoint_ensure(site_url=live_server.url)

    assert new.id != gone.id
    assert list(djstripe_models.WebhookEndpoint.objects.values_list("id", flat=True)) == [new.id]


def test_it_enables_an_endpoint_that_stripe_disabled(
    sim: SimApp, live_server, client: stripe.StripeClient
) -> None:
    endpoint = stripe_webhook_endpoint_ensure(site_url=live_server.url)
    client.v1.webhook_endpoints.update(endpoint.id, {"disabled": True})

    again = stripe_webhook_endpoint_ensure(site_url=live_server.url)

    assert again.pk == endpoint.pk
    assert again.status == "enabled"
    assert client.v1.webhook_endpoints.retrieve(endpoint.id).status == "enabled"


def test_it_leaves_other_sites_endpoints_alone(sim: SimApp, live_server, client: stripe.StripeClient) -> None:
    other = client.v1.webhook_endpoints.create({"url": "http://127.0.0.1:9/hooks", "enabled_events": ["*"]})
    stripe_webhook_endpoint_ensure(site_url=live_server.url)
    assert other.id in {e["id"] for e in _sim_endpoints(sim)}


def test_the_command_registers_the_endpoint(sim: SimApp, live_server, capsys) -> None:
    call_command("stripe_setup", "--site-url", live_server.url)
    call_command("stripe_setup", "--site-url", live_server.url)
    endpoint = djstripe_models.WebhookEndpoint.objects.get()
    assert capsys.readouterr().out.count(f"Webhook endpoint {endpoint.id}: {endpoint.url}") == 2


# --- receiving deliveries -----------------------------------------------------------------------


def test_it_stores_and_processes_signed_deliveries(
    sim: SimApp, client: stripe.StripeClient, endpoint: djstripe_models.WebhookEndpoint
) -> None:
    org = OrganizationFactory()
    sub = _subscription(client, metadata={"djstripe_subscriber": str(org.pk)})

    deliveries = _deliveries(sim)
    assert deliveries
    assert {d["status"] for d in deliveries} == {"succeeded"}
    triggers = djstripe_models.WebhookEventTrigger.objects.all()
    assert triggers.count() == len(deliveries)
    assert all(t.valid and t.processed and t.webhook_endpoint == endpoint for t in triggers)
    assert set(djstripe_models.Event.objects.values_list("id", flat=True)) == {d["event"] for d in deliveries}

    customer = djstripe_models.Customer.objects.get(id=sub.customer)
    assert customer.subscriber == org
    synced = djstripe_models.Subscription.objects.get(id=sub.id)
    assert synced.customer == customer
    assert synced.stripe_data["status"] == "active"
    assert djstripe_models.Invoice.objects.get(id=sub.latest_invoice).stripe_data["amount_paid"] == 1200


def test_it_rejects_deliveries_signed_with_another_secret(
    sim: SimApp, client: stripe.StripeClient, endpoint: djstripe_models.WebhookEndpoint
) -> None:
    sim.store.config.webhook_backoff = []  # one attempt, then give up
    with sim.store.lock:
        sim.store.get("webhook_endpoint", endpoint.id)["_secret"] = "whsec_not_the_one_tally_holds"

    client.v1.customers.create({"email": "mallory@example.com"})

    [delivery] = _deliveries(sim)
    assert delivery["attempts"][0]["status_code"] == 400
    # Refused before dj-stripe stores the body.
    assert not djstripe_models.WebhookEventTrigger.objects.exists()
    assert not djstripe_models.Event.objects.exists()
    assert not djstripe_models.Customer.objects.exists()


def test_it_rejects_a_tampered_body(
    sim: SimApp, client: stripe.StripeClient, endpoint: djstripe_models.WebhookEndpoint
) -> None:
    client.v1.customers.create({"email": "alice@example.com"})
    genuine = djstripe_models.WebhookEventTrigger.objects.get()
    signature = genuine.headers["Stripe-Signature"]
    forged = genuine.body.replace("alice@example.com", "mallory@example.com")
    assert forged != genuine.body

    request = urllib.request.Request(  # noqa: S310 - the live server on loopback
        endpoint.url,
        data=forged.encode(),
        headers={"Content-Type": "application/json", "Stripe-Signature": signature},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310

    assert refused.value.code == 400
    assert djstripe_models.WebhookEventTrigger.objects.filter(valid=False).count() == 0
    assert djstripe_models.Customer.objects.get().email == "alice@example.com"


def test_it_processes_a_redelivered_event_once(
    sim: SimApp, client: stripe.StripeClient, endpoint: djstripe_models.WebhookEndpoint
) -> None:
    handled: list[str] = []

    def count(sender, event, **kwargs) -> None:
        handled.append(event.id)

    signal = WEBHOOK_SIGNALS["customer.created"]
    signal.connect(count, weak=False)
    try:
        client.v1.customers.create({"email": "alice@example.com"})
        [first] = _deliveries(sim)
        resend = urllib.request.Request(  # noqa: S310 - the simulator on loopback
            f"{stripe.api_base}/_sim/deliveries/{first['id']}/resend", data=b"", method="POST"
        )
        with urllib.request.urlopen(resend, timeout=10) as response:  # noqa: S310
            again = json.loads(response.read())
    finally:
        signal.disconnect(count)

    assert again["event"] == first["event"]
    assert again["status"] == "succeeded"
    assert handled == [first["event"]]
    triggers = djstripe_models.WebhookEventTrigger.objects.filter(event_id=first["event"])
    assert triggers.count() == 2
    assert all(t.valid and t.processed for t in triggers)
    assert djstripe_models.Event.objects.filter(id=first["event"]).count() == 1


def test_it_receives_background_deliveries_as_the_demo_does(
    sim: SimApp, client: stripe.StripeClient, endpoint: djstripe_models.WebhookEndpoint
) -> None:
    """The receiver calls back into the API while handling a delivery; nothing may wait on it."""
    sim.store.config.webhook_mode = "background"
    sub = _subscription(client)

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if {d["status"] for d in _deliveries(sim)} == {"succeeded"}:
            break
        time.sleep(0.05)
    assert {d["status"] for d in _deliveries(sim)} == {"succeeded"}
    assert djstripe_models.Subscription.objects.get(id=sub.id).stripe_data["status"] == "active"


# --- what is checked before anything is stored ----------------------------------------------


def _post(url: str, body: bytes, signature: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _event_body() -> bytes:
    return json.dumps(
        {
            "id": "evt_forged",
            "object": "event",
            "type": "customer.created",
            "livemode": False,
            "api_version": "2025-09-30.clover",
            "created": int(time.time()),
            "data": {"object": {"id": "cus_forged", "object": "customer", "email": "m@example.com"}},
        }
    ).encode()


def _sign(body: bytes, secret: str, at: int) -> str:
    digest = stripe.WebhookSignature._compute_signature(f"{at}.{body.decode()}", secret)
    return f"t={at},v1={digest}"


def _nothing_stored() -> bool:
    return not (
        djstripe_models.WebhookEventTrigger.objects.exists() or djstripe_models.Event.objects.exists()
    )


@pytest.mark.parametrize(
    "signature",
    [None, "", "garbage", "t=1,v1=00", f"t={int(time.time())},v1={'ab' * 32}"],
    # Stable names: parallel workers collect separately and must name the same tests.
    ids=["missing", "empty", "garbage", "old-and-short", "now-but-wrong"],
)
def test_a_bad_signature_stores_nothing(endpoint: djstripe_models.WebhookEndpoint, signature) -> None:
    body = _event_body() + b" " * 2_000  # what an attacker would like stored
    assert _post(endpoint.url, body, signature) == 400
    assert _nothing_stored()


@pytest.mark.parametrize("offset", [-301, 301, 10 * 365 * 24 * 3600])
def test_a_signature_outside_the_tolerance_either_way_is_refused(
    endpoint: djstripe_models.WebhookEndpoint, offset: int
) -> None:
    body = _event_body()
    assert _post(endpoint.url, body, _sign(body, endpoint.secret, int(time.time()) + offset)) == 400
    assert _nothing_stored()


def test_a_signature_within_the_tolerance_reaches_dj_stripe(
    endpoint: djstripe_models.WebhookEndpoint,
) -> None:
    body = _event_body()
    _post(endpoint.url, body, _sign(body, endpoint.secret, int(time.time()) + 60))
    assert djstripe_models.WebhookEventTrigger.objects.get().valid


def test_a_body_over_the_cap_is_refused_unread(endpoint: djstripe_models.WebhookEndpoint, settings) -> None:
    body = _event_body() + b" " * settings.STRIPE_WEBHOOK_MAX_BYTES
    assert _post(endpoint.url, body, _sign(body, endpoint.secret, int(time.time()))) == 413
    assert _nothing_stored()
