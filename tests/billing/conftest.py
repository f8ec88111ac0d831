import time
from dataclasses import dataclass

import pytest
import requests

from billing import services, subscriptions
from billing.models import OrgSubscription
from billing.stripe_client import stripe_client
from billing.stripe_setup import stripe_webhook_endpoint_ensure


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
    services.catalog_push()
    stripe_webhook_endpoint_ensure(site_url=live_server.url)
    client = stripe_client()
    clock = client.v1.test_helpers.test_clocks.create({"frozen_time": int(time.time())}).id
    subscriptions.customer_ensure(organization=org, test_clock=clock)
    return World(client=client, clock=clock, sim=stripe_sim)


def pay_hosted_checkout(url: str, card: str = "4242424242424242") -> requests.Response:
    """Pay on the simulator's hosted Checkout page, as the person would."""
    return requests.post(
        url, data={"card_number": card, "email": "alice@example.com"}, allow_redirects=False, timeout=30
    )
