import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from billing import entitlements
from billing.catalog import catalog_apply, load_catalog
from billing.entitlements import ratelimit
from billing.models import Feature, Plan, SubscriptionStatus
from teams import keycache
from teams.models import Role
from tests.factories import MembershipFactory, OrganizationFactory

PASSWORD = "correct horse battery"


_FEATURES = set(load_catalog().features)


def subscribed(org, plan_key, status=SubscriptionStatus.ACTIVE, **kwargs):
    """`org` on `plan_key` in Tally's own tables, with no Stripe subscription behind it (for tests
    of what a plan allows; `tests.billing.conftest.subscribe` goes through Stripe)."""
    subscription = entitlements.subscription_set(
        organization=org, plan=Plan.objects.get(key=plan_key), status=status, **kwargs
    )
    # The service invalidates on commit, which a test transaction never reaches;
    # test_a_subscription_change_invalidates_the_cache covers that path.
    entitlements.invalidate(org)
    return subscription


def _ensure_catalog() -> None:
    # Also after a transactional test flushed the database.
    have = Feature.objects.filter(key__in=_FEATURES).count()
    if have != len(_FEATURES) or not Plan.objects.filter(is_free=True).exists():
        catalog_apply(load_catalog())


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Load the demo catalog once: every test runs against the plans Tally ships with (applied
    even to a reused database, which may predate the file's last change)."""
    with django_db_blocker.unblock():
        catalog_apply(load_catalog())


@pytest.fixture(autouse=True)
def _fresh_state(request):
    """A clean cache per test, and the catalog back after a transactional test flushed it."""
    cache.clear()
    keycache.forget_local()
    ratelimit.forget_limits()
    if "django_db" in {m.name for m in request.node.iter_markers()} or {
        "db",
        "transactional_db",
        "live_server",
    } & set(request.fixturenames):
        request.getfixturevalue("django_db_blocker")
        with request.getfixturevalue("django_db_blocker").unblock():
            _ensure_catalog()
    yield


@pytest.fixture
def org(db):
    return OrganizationFactory(name="Acme", slug="acme")


@pytest.fixture
def owner(org):
    return MembershipFactory(organization=org, role=Role.OWNER, user__email="alice@example.com").user


@pytest.fixture
def admin(org):
    return MembershipFactory(organization=org, role=Role.ADMIN, user__email="adam@example.com").user


@pytest.fixture
def billing_manager(org):
    return MembershipFactory(organization=org, role=Role.BILLING, user__email="bill@example.com").user


@pytest.fixture
def member(org):
    return MembershipFactory(organization=org, role=Role.MEMBER, user__email="bob@example.com").user


@pytest.fixture
def outsider(db):
    """Charlie owns another organization and must never see Acme's data."""
    other = OrganizationFactory(name="Other", slug="other")
    return MembershipFactory(organization=other, role=Role.OWNER, user__email="charlie@example.com").user


@pytest.fixture
def client_for(client):
    def login(user):
        client.force_login(user)
        return client

    return login


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture(scope="session")
def _stripe_sim_server():
    import threading

    from werkzeug.serving import make_server

    from stripe_sim.app import SimApp

    app = SimApp()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield app, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    app.dispatcher.stop()


@pytest.fixture
def stripe_sim(_stripe_sim_server, settings):
    """The Stripe simulator on a loopback port, empty for each test, with Tally and dj-stripe
    (which uses the SDK's module-level address) pointed at it."""
    import stripe

    from stripe_sim.store import Config

    app, url = _stripe_sim_server
    # Synchronous delivery: once an API call returns, its webhooks have been handled. A test
    # that switched to background delivery must not leave its thread taking later deliveries.
    app.dispatcher.stop()
    app.store.reset()
    app.store.config = Config(webhook_mode="sync")
    settings.STRIPE_API_HOST = url
    previous, stripe.api_base = stripe.api_base, url
    yield app
    stripe.api_base = previous


@pytest.fixture
def machine(stripe_sim):
    """The lifecycle machine, driven step by step (a failing seed's steps, replayed plainly)."""
    from tests.invariants.test_lifecycle_machine import _SIM, LifecycleMachine

    _SIM[:] = [stripe_sim]
    state = LifecycleMachine()
    yield state
    state.teardown()
    _SIM.clear()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    from stripe_sim.strict import STRICT

    STRICT.take()  # what an earlier test's teardown caused is not this test's


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """A response or event payload of the simulator that differs from Stripe's shape fails the
    test that caused it (the simulator serves from its own threads, so it only records them)."""
    from stripe_sim.strict import STRICT

    result = yield
    violations = STRICT.take()
    if violations:
        shown = "\n".join(f"  {v}" for v in violations[:20])
        more = f"\n  ... and {len(violations) - 20} more" if len(violations) > 20 else ""
        pytest.fail(
            f"stripe_sim served {len(violations)} shapes Stripe would not:\n{shown}{more}", pytrace=False
        )
    return result


_STRICT_COUNTERS = ("requests", "responses", "events", "violations_total")


def pytest_sessionfinish(session):
    # A parallel worker hands its simulator's counters to the controller, which prints the sum.
    if hasattr(session.config, "workeroutput"):
        from stripe_sim.strict import STRICT

        session.config.workeroutput["stripe_sim_strict"] = {k: getattr(STRICT, k) for k in _STRICT_COUNTERS}


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: absent with `-p no:xdist`
def pytest_testnodedown(node, error):
    from stripe_sim.strict import STRICT

    for key, value in getattr(node, "workeroutput", {}).get("stripe_sim_strict", {}).items():
        setattr(STRICT, key, getattr(STRICT, key) + value)


def pytest_terminal_summary(terminalreporter):
    from stripe_sim.strict import STRICT

    terminalreporter.write_line(STRICT.summary())
