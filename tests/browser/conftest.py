"""Browser tests: Playwright driving the system's Chromium against a live test server."""

import os
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from billing import catalog, entitlements, subscriptions
from billing.gateway.client import stripe_client
from billing.gateway.customers import customer_ensure
from billing.gateway.setup import stripe_webhook_endpoint_ensure
from billing.models import Plan
from credits import services as credit_services
from projects import services as project_services
from projects.models import AiModel
from teams import services as team_services
from teams.models import Role
from tests.factories import MembershipFactory

# Playwright's sync API runs an event loop in this thread; the ORM calls made by the test
# itself (fixtures, assertions) are still plain synchronous code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
WORLD_PASSWORD = "a-long-enough-pass"


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt package chromium).")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser, live_server):
    """A page on the live server. Whatever the Content-Security-Policy blocks on any page a test
    visits (an inline script, handler or style) fails the test."""
    contexts, violations = [], []

    def on_console(message) -> None:
        # A script the test evaluates itself (axe-core, which styles what it measures) has no
        # URL; whatever the page's own markup and files do is reported with theirs.
        if "Content Security Policy" in message.text and message.location.get("url"):
            violations.append(message.text)

    def make():
        context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 800})
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.on("console", on_console)
        return page

    yield make
    for context in contexts:
        context.close()
    assert violations == [], violations


@pytest.fixture
def shoot():
    """Save a screenshot; `make screenshots` points this at the README's folder."""
    folder = ROOT / os.environ.get("TALLY_SCREENSHOTS", "test-artifacts/screenshots")
    folder.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def stripe_live(stripe_sim, live_server, settings):
    """The simulator with the catalog pushed and Tally's webhook endpoint on the live server, so
    that a hosted Stripe page a test pays on comes back to Tally as it would in production."""
    settings.SITE_URL = live_server.url
    catalog.catalog_push()
    stripe_webhook_endpoint_ensure(site_url=live_server.url)
    return stripe_sim


@pytest.fixture
def world(stripe_sim):
    """Olivia owns Acme, on Pro through the simulator, with projects, credits and a member."""
    catalog.catalog_push()
    credit_services.credits_seed_packages()
    owner = team_services.user_create(
        email="olivia@example.com", password=WORLD_PASSWORD, name="Olivia Owner"
    )
    org = team_services.organization_create(owner=owner, name="Acme Analytics Worldwide Holdings")
    member = team_services.user_create(email="max@example.com", password=WORLD_PASSWORD, name="Max Member")
    MembershipFactory(organization=org, user=member, role=Role.MEMBER)
    client = stripe_client()
    customer = customer_ensure(organization=org)
    card = client.v1.payment_methods.attach("pm_card_visa", {"customer": customer})
    client.v1.customers.update(customer, {"invoice_settings": {"default_payment_method": card.id}})
    plan = Plan.objects.get(key="pro_monthly")
    remote = client.v1.subscriptions.create(
        {
            "customer": customer,
            "items": [{"price": i.stripe_price_id, "quantity": 1} for i in plan.line_items.all()],
            "metadata": {"tally_org_id": str(org.pk), "tally_plan": plan.key},
        }
    )
    subscriptions.invoice_record(invoice_id=remote.latest_invoice)
    subscriptions.subscription_sync(subscription_id=remote.id)
    # Most of the month's generations used: the navigation shows what is left.
    entitlements.consume(org, "ai_generations", 95, idempotency_key="seed")
    for name in ("Quarterly forecast with a rather long descriptive name", "Support copilot"):
        project = project_services.project_create(
            organization=org, name=name, description="Revenue model for the board pack.", actor=owner
        )
        project_services.generation_create(
            project=project, prompt="A calm logo for a billing company", model=AiModel.IMAGE, actor=owner
        )
    return org, owner, member
