"""Real threads against PostgreSQL: no double spend, no lost update, one charge per key."""

import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from credits import services
from credits.models import CreditAccount, CreditReservation, CreditTransaction
from tests.credits.helpers import assert_reconciles

pytestmark = pytest.mark.django_db(transaction=True)

# The scenario: 50 threads consuming 1 credit 100 times each from a balance of 1,000,
# so that the row lock is contended and four calls in five are refused.
THREADS = 50
CALLS = 100
CREDITS = 1000


def _race(work) -> list[Exception]:
    """Run work(thread_number) on THREADS threads released together; return unexpected errors."""
    barrier = threading.Barrier(THREADS)
    errors = []

    def run(n):
        try:
            barrier.wait()
            work(n)
        except Exception as error:  # reported by the test
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


@pytest.fixture
def funded(org):
    # Ten grants, so that concurrent spending also has to draw across buckets.
    for i in range(10):
        services.credits_grant(
            organization=org, amount=CREDITS // 10, source="purchase", idempotency_key=f"g{i}"
        )
    return org


def test_it_never_spends_a_credit_twice(funded):
    org = funded
    spent, refused = [], []

    def work(n):
        for i in range(CALLS):
            try:
                services.credits_consume(organization=org, amount=1, idempotency_key=f"{n}-{i}")
                spent.append(1)
            except services.InsufficientCredits:
                refused.append(1)

    assert _race(work) == []
    assert (len(spent), len(refused)) == (CREDITS, THREADS * CALLS - CREDITS)
    account = CreditAccount.objects.get(organization=org)
    assert (account.balance, account.lifetime_used) == (0, CREDITS)
    assert CreditTransaction.objects.filter(type="consumption").count() == CREDITS
    assert_reconciles()


def test_it_stays_exact_with_reservations_and_confirms_interleaved(funded):
    org = funded
    spent = []

    def work(n):
        for i in range(CALLS):
            key = f"{n}-{i}"
            try:
                if i % 3 == 0:
                    services.credits_consume(organization=org, amount=1, idempotency_key=key)
                elif i % 3 == 1:
                    held = services.credit_reservation_create(organization=org, amount=1, idempotency_key=key)
                    services.credit_reservation_confirm(reservation=held)
                else:
                    # Hold two, use one: the other goes back for the other threads.
                    held = services.credit_reservation_create(organization=org, amount=2, idempotency_key=key)
                    services.credit_reservation_confirm(reservation=held, amount=1)
                spent.append(1)
            except services.InsufficientCredits:
                pass

    assert _race(work) == []
    assert len(spent) == CREDITS
    account = CreditAccount.objects.get(organization=org)
    assert (account.balance, account.held) == (0, 0)
    assert not CreditReservation.objects.filter(status="held").exists()
    assert_reconciles()


def test_replayed_idempotency_keys_charge_once(funded):
    org = funded
    seen = {}
    lock = threading.Lock()

    def work(n):
        for i in range(20):
            entry = services.credits_consume(organization=org, amount=3, idempotency_key=f"job-{i}")
            with lock:
                seen.setdefault(f"job-{i}", set()).add(entry.pk)

    assert _race(work) == []
    assert all(len(pks) == 1 for pks in seen.values())
    assert CreditTransaction.objects.filter(type="consumption").count() == 20
    assert CreditAccount.objects.get(organization=org).balance == CREDITS - 20 * 3
    assert_reconciles()


def test_outside_a_transaction_a_consumption_is_one_round_trip(funded):
    org = funded
    # The first on a connection prepares its two statements first (common/postgresql/prepared.py).
    with CaptureQueriesContext(connection) as queries:
        services.credits_consume(organization=org, amount=100, idempotency_key="first")
    assert [q["sql"].split()[0] for q in queries] == ["PREPARE", "PREPARE", "EXECUTE"]
    with CaptureQueriesContext(connection) as queries:
        entry = services.credits_consume(organization=org, amount=150, idempotency_key="one")
    assert len(queries) == 1
    # Drawn across two of the ten grants (the first call emptied the first).
    assert sorted(credits for _, credits in entry.draws()) == [-100, -50]
    assert (entry.balance_after, entry.replayed) == (CREDITS - 250, False)

    # The key again: the failed insert takes the account update back with it.
    again = services.credits_consume(organization=org, amount=150, idempotency_key="one")
    assert (again.pk, again.replayed) == (entry.pk, True)
    # Short of funds: nothing moves.
    with pytest.raises(services.InsufficientCredits):
        services.credits_consume(organization=org, amount=CREDITS, idempotency_key="two")
    account = CreditAccount.objects.get(organization=org)
    assert (account.balance, account.lifetime_used) == (CREDITS - 250, 250)
    assert CreditTransaction.objects.filter(type="consumption").count() == 2
    assert_reconciles()
