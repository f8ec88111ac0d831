"""Seat syncs through a real Celery worker on Redis, and the last free seat raced on PostgreSQL.

The worker runs in a thread of this process (so it shares the cache and the simulator), takes
tasks from Redis with their countdowns, and retries with back-off as in production. Stripe
quantity updates are counted in the simulator's own request log."""

import threading
import time

import pytest
import redis
import stripe
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import connection, connections

import billing.seats.schedule
import billing.seats.sync
from billing import catalog
from billing.entitlements.gating import EntitlementError
from billing.gateway.client import stripe_client
from billing.models import OrgSubscription
from config.celery import app
from teams import services as team_services
from teams.models import Membership
from tests.billing.test_seats import seat_quantity, sim_quantity_updates, subscribe_seats, team
from tests.factories import InvitationFactory, MembershipFactory, OrganizationFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

# The test settings' Redis: a run of its own never shares a queue with another run.
BROKER = django_settings.REDIS_URL
DELAY = 2


def _close_connections(**kwargs) -> None:
    connections.close_all()  # the worker thread's own; the test database is flushed after


@pytest.fixture
def worker(settings, stripe_sim):
    """A Celery worker on Redis, tasks no longer run in-process."""
    redis.Redis.from_url(BROKER).flushdb()
    settings.BILLING_SEAT_SYNC_DELAY = DELAY
    saved = {k: app.conf[k] for k in ("broker_url", "task_always_eager")}
    app.conf.update(broker_url=BROKER, task_always_eager=False)
    task_postrun.connect(_close_connections, weak=False)
    try:
        with start_worker(
            app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=30
        ):
            yield
    finally:
        task_postrun.disconnect(_close_connections)
        app.conf.update(saved)
        redis.Redis.from_url(BROKER).flushdb()


def settle(org, until, *, timeout: float = 30) -> None:
    """Wait until `until()` holds and no sync is scheduled or running, then one more countdown
    to be sure nothing else arrives."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        idle = not cache.get(billing.seats.schedule._scheduled_key(org.pk)) and not cache.get(
            billing.seats.sync._lock_key(org.pk)
        )
        if idle and until():
            time.sleep(DELAY + 1)
            return
        time.sleep(0.2)
    raise AssertionError("the seat sync did not settle")


@pytest.fixture
def seated(worker, stripe_sim):
    catalog.catalog_push()
    client = stripe_client()
    org = OrganizationFactory(name="Acme", slug="acme")
    owner = team(org, 1)
    sub, _ = subscribe_seats(org, "team_monthly")
    return client, org, owner, sub


def test_a_burst_of_20_acceptances_makes_at_most_2_quantity_updates(seated, stripe_sim):
    client, org, _, sub = seated
    invitations = [InvitationFactory(organization=org, email=f"p{n}@example.com") for n in range(20)]
    people = [UserFactory(email=f"p{n}@example.com") for n in range(20)]
    before = len(sim_quantity_updates(stripe_sim))
    for invitation, person in zip(invitations, people, strict=True):
        team_services.invitation_accept(invitation=invitation, user=person)  # each commits
    settle(org, lambda: seat_quantity(client, sub) == 21)
    updates = sim_quantity_updates(stripe_sim)[before:]
    assert 1 <= len(updates) <= 2
    assert seat_quantity(client, sub) == Membership.objects.filter(organization=org).count() == 21
    assert OrgSubscription.objects.get(pk=sub.pk).seats == 21


def test_a_failing_stripe_call_is_retried_and_ends_correct(seated, stripe_sim, monkeypatch):
    client, org, owner, sub = seated
    real, calls = billing.seats.sync._item_quantity_set, []

    def flaky(*args, **kwargs):
        calls.append(kwargs["idempotency_key"])
        if len(calls) == 1:
            raise stripe.APIConnectionError("connection reset by peer")
        return real(*args, **kwargs)

    monkeypatch.setattr(billing.seats.sync, "_item_quantity_set", flaky)
    MembershipFactory.create_batch(3, organization=org)  # each save commits and schedules
    settle(org, lambda: len(calls) >= 2 and seat_quantity(client, sub) == 4)
    assert seat_quantity(client, sub) == 4
    # The retry repeated the same request under the same idempotency key.
    assert calls[0] == calls[1] and len(calls) == 2
    assert len(sim_quantity_updates(stripe_sim)) == 1


# --- The last seat --------------------------------------------------------------------------


def test_two_people_accepting_the_last_seat_cannot_both_get_it(db):
    org = OrganizationFactory(name="Acme", slug="acme")
    team(org, 2)  # Free allows three members: one seat left
    invitations = [InvitationFactory(organization=org, email=f"last{n}@example.com") for n in range(2)]
    people = [UserFactory(email=f"last{n}@example.com") for n in range(2)]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def accept(invitation, person):
        try:
            barrier.wait()
            team_services.invitation_accept(invitation=invitation, user=person)
            outcomes.append("joined")
        except EntitlementError as error:
            outcomes.append(error.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=accept, args=pair) for pair in zip(invitations, people, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["joined", "limit_reached"]
    assert Membership.objects.filter(organization=org).count() == 3
