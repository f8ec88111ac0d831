"""The credits periodic job, run by two schedulers at once (a second beat during a failover):
every hold is released once and every grant expires once."""

from datetime import timedelta

import pytest
from django.utils import timezone

from credits import services
from credits.models import CreditGrant, CreditReservation, CreditTransaction, GrantSource
from credits.tasks import expire_credits
from tests.credits.helpers import assert_reconciles, balance_of
from tests.races import race

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_expiry_runs_at_once_release_and_expire_each_thing_once(org, fund):
    for _ in range(3):
        fund(10, source=GrantSource.PROMOTION, expires_at=timezone.now() + timedelta(hours=1))
    fund(50)
    for n in range(4):
        services.credit_reservation_create(organization=org, amount=5, idempotency_key=f"hold-{n}")
    past = timezone.now() - timedelta(seconds=1)
    CreditReservation.objects.update(expires_at=past)
    CreditGrant.objects.filter(source="promotion").update(expires_at=past)

    outcomes = race(2, lambda _: expire_credits.apply().get())

    assert [o for o in outcomes if isinstance(o, Exception)] == []
    assert set(CreditReservation.objects.values_list("status", flat=True)) == {"expired"}
    expiries = CreditTransaction.objects.filter(type="expiry")
    assert expiries.count() == 3  # one per promotional grant, whichever run got it
    assert balance_of(org) == 50
    assert_reconciles()
