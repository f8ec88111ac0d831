from datetime import timedelta

import pytest
from django.utils import timezone

from common.errors import ServiceError
from credits import services
from credits.models import CreditAccount, CreditReservation, CreditTransaction
from tests.credits.helpers import assert_reconciles, balance_of

pytestmark = pytest.mark.django_db


def _reserve(org, amount=10, key="r1", **kwargs):
    return services.credit_reservation_create(organization=org, amount=amount, idempotency_key=key, **kwargs)


def test_it_holds_then_confirms_at_most_the_hold_and_releases_the_rest(org, fund):
    fund(20)
    reservation = _reserve(org, 10)
    account = CreditAccount.objects.get(organization=org)
    assert (account.balance, account.held, account.available) == (20, 10, 10)
    with pytest.raises(ServiceError) as refused:
        services.credit_reservation_confirm(reservation=reservation, amount=11)
    assert (refused.value.code, refused.value.field) == ("amount_exceeds_hold", "amount")
    confirmed = services.credit_reservation_confirm(reservation=reservation, amount=7)
    account.refresh_from_db()
    assert (account.balance, account.held) == (13, 0)
    assert (confirmed.status, confirmed.consumed, confirmed.transaction.amount) == ("confirmed", 7, -7)
    assert_reconciles()


def test_it_confirms_twice_and_charges_once(org, fund):
    fund(20)
    reservation = _reserve(org, 10)
    first = services.credit_reservation_confirm(reservation=reservation)
    again = services.credit_reservation_confirm(reservation=CreditReservation.objects.get(pk=reservation.pk))
    assert again.replayed and again.transaction.pk == first.transaction.pk
    assert balance_of(org) == 10
    assert CreditTransaction.objects.filter(type="consumption").count() == 1


def test_it_cancels_twice_and_will_not_confirm_a_cancelled_hold(org, fund):
    fund(20)
    reservation = _reserve(org, 10)
    services.credit_reservation_cancel(reservation=reservation)
    again = services.credit_reservation_cancel(reservation=CreditReservation.objects.get(pk=reservation.pk))
    assert again.replayed
    with pytest.raises(ServiceError) as refused:
        services.credit_reservation_confirm(reservation=CreditReservation.objects.get(pk=reservation.pk))
    assert (refused.value.code, refused.value.status) == ("reservation_closed", 409)
    account = CreditAccount.objects.get(organization=org)
    assert (account.balance, account.held) == (20, 0)
    assert_reconciles()


def test_a_hold_keeps_other_spending_away_from_its_credits(org, fund):
    fund(20)
    _reserve(org, 15)
    with pytest.raises(services.InsufficientCredits) as refused:
        services.credits_consume(organization=org, amount=6, idempotency_key="c")
    assert refused.value.available == 5
    with pytest.raises(services.InsufficientCredits):
        _reserve(org, 6, key="r2")


def test_it_replays_a_reservation_key(org, fund):
    fund(20)
    first = _reserve(org, 10)
    again = _reserve(org, 10)
    assert again.pk == first.pk and again.replayed
    assert CreditAccount.objects.get(organization=org).held == 10


def test_it_releases_stale_holds_once(org, fund):
    fund(20)
    stale = _reserve(org, 10)
    _reserve(org, 5, key="fresh")
    CreditReservation.objects.filter(pk=stale.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert services.credit_reservations_expire() == 1
    assert services.credit_reservations_expire() == 0
    stale.refresh_from_db()
    assert stale.status == "expired"
    assert CreditAccount.objects.get(organization=org).held == 5
    assert_reconciles()


def test_it_prices_a_reservation_by_action(org, fund):
    fund(200)
    reservation = _reserve(org, amount=None, action="image", quantity=3)
    assert (reservation.amount, reservation.price.action) == (150, "image")
    confirmed = services.credit_reservation_confirm(reservation=reservation)
    assert confirmed.transaction.price == reservation.price


def test_it_refuses_a_bad_time_to_live(org, fund):
    fund(20)
    with pytest.raises(ServiceError) as refused:
        _reserve(org, 5, ttl_seconds=0)
    assert refused.value.field == "ttl_seconds"
    assert CreditAccount.objects.get(organization=org).held == 0
