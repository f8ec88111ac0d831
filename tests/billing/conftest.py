import time
from dataclasses import dataclass

import pytest
import requests

from billing import catalog, subscriptions
from billing.gateway.client import stripe_client
from billing.gateway.customers import customer_ensure
from billing.gateway.setup import stripe_webhook_endpoint_ensure
from billing.models import OrgSubscription, Plan

# The lifecycle tests' world (simulator, live endpoint, test clock, Acme and its owner) for the
# other end-to-end billing tests.
from tests.billing.test_lifecycle import world  # noqa: F401


@dataclass
class World:
    """Stripe (the simulator) with a test clock, and its webhooks delivered to a live server
    through dj-stripe's endpoint, as in production."""

    client: object
    clock: str
    sim: object

    def advance_past_period_end(self, org, *, days: int = 0) -> None:
        end = OrgSubscription.objects.get(organization=org).current_period_end
        self.advance_to(int(end.timestamp()) + 60 + days * 86400)

    def advance_to(self, moment: int) -> None:
        self.client.v1.test_helpers.test_clocks.advance(self.clock, {"frozen_time": moment})

    def now(self) -> int:
        return self.client.v1.test_helpers.test_clocks.retrieve(self.clock).frozen_time


@pytest.fixture
def stripe_world(stripe_sim, live_server, settings, org):
    settings.SITE_URL = live_server.url
    settings.CREDITS_WELCOME_BONUS = 0  # balances here are the plan's allowance alone
    catalog.catalog_push()
    stripe_webhook_endpoint_ensure(site_url=live_server.url)
    client = stripe_client()
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": int(time.time())}).id
    customer_ensure(organization=org, test_clock=clock)
    return World(client=client, clock=clock, sim=stripe_sim)


def pay_hosted_checkout(url: str, card: str = "4242424242424242") -> requests.Response:
    """Pay on the simulator's hosted Checkout page, as the person would."""
    return requests.post(
        url, data={"card_number": card, "email": "alice@example.com"}, allow_redirects=False, timeout=30
    )


def subscribe(
    plan_key,
    *,
    organization,
    clock=None,
    card="pm_card_visa",
    seats=1,
    trial_days=None,
    sync=False,
    record=True,
):
    """`organization` subscribed to `plan_key` in Stripe directly (not through Checkout), its first
    invoice recorded as the `invoice.paid` webhook would; returns Tally's OrgSubscription.

    `clock=` a test clock id; `card=` a test card; `seats=` the per-seat quantity (other licensed
    items are one each); `trial_days=`; `sync=True` also syncs the subscription; `record=False`
    returns Stripe's subscription with nothing recorded (its webhooks were lost). The catalog
    must be pushed to Stripe first.
    """
    client = stripe_client()
    customer = customer_ensure(organization=organization, test_clock=clock)
    pm = client.v1.payment_methods.attach(card, {"customer": customer})
    client.v1.customers.update(customer, {"invoice_settings": {"default_payment_method": pm.id}})
    plan = Plan.objects.get(key=plan_key)
    items = []
    for item in plan.line_items.all():
        if item.kind == "metered":
            items.append({"price": item.stripe_price_id})
        else:
            quantity = seats if item.kind == "per_seat" else 1
            items.append({"price": item.stripe_price_id, "quantity": quantity})
    params = {
        "customer": customer,
        "items": items,
        "metadata": {"tally_org_id": str(organization.pk), "tally_plan": plan_key},
    }
    if trial_days:
        params["trial_period_days"] = trial_days
    remote = client.v1.subscriptions.create(params)
    if not record:
        return remote
    subscriptions.invoice_record(invoice_id=remote.latest_invoice)
    if sync:
        subscriptions.subscription_sync(subscription_id=remote.id)
    return OrgSubscription.objects.get(organization=organization)


@pytest.fixture
def subscribed(stripe_sim, org):
    """`subscribed(plan_key, **options)`: `subscribe` for `org` (or `organization=`)."""

    def subscribe_org(plan_key, **options):
        options.setdefault("organization", org)
        return subscribe(plan_key, **options)

    return subscribe_org
