import pytest

from billing.gateway.client import stripe_client
from billing.gateway.setup import stripe_webhook_endpoint_ensure
from credits import services


@pytest.fixture(autouse=True)
def _no_welcome_bonus(settings):
    # Most tests count credits from zero; the bonus has its own tests.
    settings.CREDITS_WELCOME_BONUS = 0


@pytest.fixture
def fund(org):
    """fund(100) grants purchased credits to Acme; keyword arguments pass through to the grant."""
    counter = iter(range(1_000_000))

    def grant(amount, **kwargs):
        kwargs.setdefault("source", "purchase")
        kwargs.setdefault("idempotency_key", f"fund-{next(counter)}")
        return services.credits_grant(organization=org, amount=amount, **kwargs)

    return grant


@pytest.fixture
def account(org):
    return services.credit_account_for(organization=org)


@pytest.fixture
def shop(stripe_sim, live_server, settings, org, owner):
    """The simulator with Tally's webhook endpoint on a live server, and the packages on sale."""
    settings.SITE_URL = live_server.url
    stripe_webhook_endpoint_ensure(site_url=live_server.url)
    services.credits_seed_packages()
    return stripe_client()
