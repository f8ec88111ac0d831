from datetime import timedelta

import pytest
from django.utils import timezone

import credits.services.debits
from common.errors import ServiceError
from credits import services
from credits.models import CreditAccount, CreditGrant, CreditPrice, CreditTransaction, GrantSource
from teams.models import AuditEvent
from tests.credits.helpers import assert_reconciles, balance_of

pytestmark = pytest.mark.django_db


def _consume(org, amount=None, key="k", **kwargs):
    return services.credits_consume(organization=org, amount=amount, idempotency_key=key, **kwargs)


def test_it_opens_an_account_with_the_welcome_bonus_once(org, settings):
    settings.CREDITS_WELCOME_BONUS = 500
    first = services.credit_account_for(organization=org)
    second = services.credit_account_for(organization=org)
    assert first.pk == second.pk
    assert second.balance == 500
    bonus = CreditTransaction.objects.get(account=first)
    assert (bonus.type, bonus.amount, bonus.idempotency_key) == ("bonus", 500, "welcome-bonus")
    assert_reconciles()


def test_it_consumes_by_priority_then_soonest_expiry_then_age(org, fund):
    soon = timezone.now() + timedelta(days=2)
    later = timezone.now() + timedelta(days=20)
    bought = fund(100)
    allowance_late = fund(10, source=GrantSource.SUBSCRIPTION_ALLOWANCE, expires_at=later)
    allowance_soon = fund(10, source=GrantSource.SUBSCRIPTION_ALLOWANCE, expires_at=soon)
    bonus = fund(10, source=GrantSource.BONUS)

    def grant_of(entry):
        return entry.allocations.get().grant

    entry = _consume(org, 25)
    drawn = {grant_id: -credits for grant_id, credits in entry.draws()}
    assert drawn == {grant_of(allowance_soon).pk: 10, grant_of(allowance_late).pk: 10, grant_of(bonus).pk: 5}
    assert grant_of(bought).remaining == 100
    assert entry.balance_after == 105 == balance_of(org)
    assert_reconciles()


def test_it_refuses_to_overspend_and_changes_nothing(org, fund):
    fund(10)
    with pytest.raises(services.InsufficientCredits) as refused:
        _consume(org, 11)
    assert refused.value.status == 402
    assert refused.value.as_dict()["code"] == "insufficient_credits"
    assert (refused.value.required, refused.value.balance) == (11, 10)
    assert balance_of(org) == 10
    assert not CreditTransaction.objects.filter(type="consumption").exists()


def test_it_refuses_to_spend_with_no_account_and_opens_one(org):
    with pytest.raises(services.InsufficientCredits):
        _consume(org, 1)
    assert CreditAccount.objects.filter(organization=org).exists()


def test_it_lets_the_balance_go_into_the_overdraft_grace_and_repays_it_first(org, fund, account):
    CreditAccount.objects.filter(pk=account.pk).update(overdraft_allowance=5)
    fund(10)
    entry = _consume(org, 14)
    assert entry.balance_after == -4
    with pytest.raises(services.InsufficientCredits):
        _consume(org, 2, key="second")
    top_up = fund(10)
    assert top_up.metadata == {"overdraft_repaid": 4}
    assert top_up.allocations.get().amount == 6
    assert balance_of(org) == 6
    assert_reconciles()


def test_it_charges_a_replayed_key_once(org, fund):
    fund(10)
    first = _consume(org, 3, key="job-1")
    again = _consume(org, 3, key="job-1")
    assert again.pk == first.pk and again.replayed and not first.replayed
    assert balance_of(org) == 7


def test_it_replays_a_key_even_after_the_credits_ran_out(org, fund):
    fund(3)
    first = _consume(org, 3, key="job-1")
    assert _consume(org, 3, key="job-1").pk == first.pk


def test_it_refuses_a_key_reused_for_another_amount(org, fund):
    fund(10)
    _consume(org, 3, key="job-1")
    with pytest.raises(ServiceError) as refused:
        _consume(org, 4, key="job-1")
    assert (refused.value.code, refused.value.status) == ("idempotency_key_reused", 409)
    assert balance_of(org) == 7


@pytest.mark.parametrize(
    ("kwargs", "code", "field"),
    [
        ({"amount": 1.5}, "invalid_amount", "amount"),
        ({"amount": 0}, "invalid_amount", "amount"),
        ({"amount": -3}, "invalid_amount", "amount"),
        ({"amount": True}, "invalid_amount", "amount"),
        ({"amount": 10**13}, "invalid_amount", "amount"),
        ({"amount": None}, "amount_required", "amount"),
        ({"amount": 3, "action": "image"}, "amount_or_action", "amount"),
        ({"action": "teleport"}, "unknown_action", "action"),
        ({"action": "image", "quantity": 0}, "invalid_amount", "quantity"),
        ({"amount": 3, "idempotency_key": " "}, "idempotency_key_required", "idempotency_key"),
        ({"amount": 3, "idempotency_key": "x" * 256}, "invalid_idempotency_key", "idempotency_key"),
    ],
)
def test_it_explains_bad_input_and_changes_nothing(org, fund, kwargs, code, field):
    fund(100)
    kwargs.setdefault("idempotency_key", "k")
    with pytest.raises(ServiceError) as refused:
        services.credits_consume(organization=org, **kwargs)
    assert (refused.value.code, refused.value.field) == (code, field)
    assert balance_of(org) == 100


def test_it_prices_actions_by_the_version_in_effect(org, fund):
    fund(1000)
    first = _consume(org, action="image", quantity=2, key="a")
    assert (first.amount, first.price.version, first.action) == (-100, 1, "image")
    services.credit_price_set(action="image", credits=40, unit="image")
    second = _consume(org, action="image", key="b")
    assert (second.amount, second.price.version) == (-40, 2)
    assert CreditPrice.objects.filter(action="image").count() == 2
    first.refresh_from_db()
    assert first.price.credits == 50


def test_it_rounds_token_prices_up_to_whole_credits():
    assert services.credits_estimate(action="gpt-4", quantity=1).credits == 1
    assert services.credits_estimate(action="gpt-4", quantity=1000).credits == 10
    assert services.credits_estimate(action="gpt-4", quantity=1001).credits == 11
    assert services.credits_estimate(action="gpt-4o-mini", quantity=2500).credits == 5


def test_it_grants_idempotently_and_checks_the_source(org):
    first = services.credits_grant(organization=org, amount=50, source="promotion", idempotency_key="promo-1")
    again = services.credits_grant(organization=org, amount=50, source="promotion", idempotency_key="promo-1")
    assert again.pk == first.pk and again.replayed
    assert balance_of(org) == 50
    with pytest.raises(ServiceError) as refused:
        services.credits_grant(organization=org, amount=5, source="gift", idempotency_key="x")
    assert refused.value.field == "source"
    with pytest.raises(ServiceError) as refused:
        services.credits_grant(
            organization=org,
            amount=5,
            source="promotion",
            idempotency_key="y",
            expires_at=timezone.now() - timedelta(days=1),
        )
    assert refused.value.code == "invalid_expiry"


def test_it_grants_a_monthly_allowance_that_expires_at_period_end(org):
    period_end = timezone.now() + timedelta(days=30)
    services.credits_grant(
        organization=org,
        amount=1000,
        source=GrantSource.SUBSCRIPTION_ALLOWANCE,
        expires_at=period_end,
        idempotency_key="allowance:sub_1:2026-11",
    )
    grant = CreditGrant.objects.get()
    assert (grant.expires_at, grant.priority) == (period_end, 10)
    assert CreditTransaction.objects.get().type == "allowance"


def test_it_refunds_a_consumption_to_the_grants_it_drew_from(org, fund):
    fund(5, source=GrantSource.BONUS)
    fund(20)
    consumption = _consume(org, 10)
    refund = services.credits_refund(consumption=consumption, reason="Generation failed")
    again = services.credits_refund(consumption=consumption, reason="Generation failed")
    assert again.pk == refund.pk and again.replayed
    assert balance_of(org) == 25
    assert {g.source: g.remaining for g in CreditGrant.objects.all()} == {"bonus": 5, "purchase": 20}
    assert refund.refund_of == consumption
    assert CreditAccount.objects.get(organization=org).lifetime_used == 0
    assert_reconciles()


def test_it_refunds_in_parts_but_never_more_than_was_taken(org, fund):
    fund(20)
    consumption = _consume(org, 10)
    services.credits_refund(consumption=consumption, amount=4, idempotency_key="r1")
    with pytest.raises(ServiceError) as refused:
        services.credits_refund(consumption=consumption, amount=7, idempotency_key="r2")
    assert (refused.value.code, refused.value.field) == ("refund_too_large", "amount")
    services.credits_refund(consumption=consumption, idempotency_key="r3")
    assert balance_of(org) == 20
    with pytest.raises(ServiceError):
        services.credits_refund(consumption=consumption, idempotency_key="r4")
    assert_reconciles()


def test_it_refunds_credits_of_an_expired_grant_as_a_new_grant(org, fund):
    fund(10, source=GrantSource.PROMOTION, expires_at=timezone.now() + timedelta(hours=1))
    consumption = _consume(org, 4)
    CreditGrant.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
    services.credit_grants_expire()
    services.credits_refund(consumption=consumption)
    refund_grant = CreditGrant.objects.get(source=GrantSource.REFUND)
    assert (refund_grant.remaining, refund_grant.expires_at) == (4, None)
    assert balance_of(org) == 4
    assert_reconciles()


def test_it_refunds_only_consumptions(org, fund):
    grant = fund(10)
    with pytest.raises(ServiceError) as refused:
        services.credits_refund(consumption=grant)
    assert refused.value.code == "not_refundable"


def test_staff_adjust_with_a_reason_and_it_is_audited(org, fund, owner):
    owner.is_staff = True
    owner.save()
    fund(10)
    down = services.credits_adjust(
        organization=org, amount=-4, reason="Duplicate charge", actor=owner, idempotency_key="t-1"
    )
    again = services.credits_adjust(
        organization=org, amount=-4, reason="Duplicate charge", actor=owner, idempotency_key="t-1"
    )
    assert again.pk == down.pk
    up = services.credits_adjust(organization=org, amount=7, reason="Goodwill", actor=owner)
    assert (down.type, down.amount, up.amount) == ("adjustment", -4, 7)
    assert balance_of(org) == 13
    events = AuditEvent.objects.filter(action="credits.adjusted")
    assert events.count() == 2
    assert {e.data["reason"] for e in events} == {"Duplicate charge", "Goodwill"}
    assert_reconciles()


def test_only_staff_adjust_and_a_reason_is_required(org, owner):
    with pytest.raises(ServiceError) as refused:
        services.credits_adjust(organization=org, amount=5, reason="x", actor=owner)
    assert (refused.value.code, refused.value.status) == ("staff_only", 403)
    owner.is_staff = True
    with pytest.raises(ServiceError) as refused:
        services.credits_adjust(organization=org, amount=5, reason=" ", actor=owner)
    assert refused.value.field == "reason"
    assert not CreditTransaction.objects.exists()


def test_it_expires_grants_with_ledger_entries_once(org, fund):
    fund(10, source=GrantSource.PROMOTION, expires_at=timezone.now() + timedelta(hours=1))
    fund(5)
    _consume(org, 3)
    CreditGrant.objects.filter(source="promotion").update(expires_at=timezone.now() - timedelta(seconds=1))
    assert services.credit_grants_expire() == 1
    assert services.credit_grants_expire() == 0
    expiry = CreditTransaction.objects.get(type="expiry")
    assert (expiry.amount, expiry.balance_after) == (-7, 5)
    assert balance_of(org) == 5
    assert_reconciles()


def test_it_does_not_expire_credits_that_a_reservation_holds(org, fund):
    fund(10, source=GrantSource.PROMOTION, expires_at=timezone.now() + timedelta(hours=1))
    reservation = services.credit_reservation_create(organization=org, amount=6, idempotency_key="r")
    CreditGrant.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    services.credit_grants_expire()
    assert balance_of(org) == 6
    services.credit_reservation_confirm(reservation=reservation, amount=2)
    services.credit_grants_expire()
    assert balance_of(org) == 0
    assert [t.amount for t in CreditTransaction.objects.filter(type="expiry").order_by("pk")] == [-4, -4]
    assert_reconciles()


def test_the_database_refuses_a_balance_below_the_overdraft(account):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        CreditAccount.objects.filter(pk=account.pk).update(balance=-1)


def test_the_portable_path_draws_and_records_the_same(org, fund, monkeypatch):
    # SQLite (the demo) cannot run the single-statement draw; the statement-by-statement path
    # must leave the same ledger, grants and allocations.
    monkeypatch.setattr(credits.services.debits, "SINGLE_STATEMENT_DEBIT", False)
    fund(5, source=GrantSource.BONUS)
    fund(20)
    entry = _consume(org, 8)
    assert sorted(-credits for _, credits in entry.draws()) == [3, 5]
    held = services.credit_reservation_create(organization=org, amount=4, idempotency_key="r")
    services.credit_reservation_confirm(reservation=held, amount=2)
    assert balance_of(org) == 15
    assert_reconciles()


# --- An expired grant is never drawn, whether or not the expiry job has run yet ---------------


def _expire_promotion_without_the_job():
    # Past its date, but the periodic expiry has not come round yet.
    CreditGrant.objects.filter(source="promotion").update(expires_at=timezone.now() - timedelta(seconds=1))


@pytest.mark.parametrize("portable", [False, True])
def test_it_never_consumes_from_a_grant_past_its_expiry(org, fund, monkeypatch, portable):
    monkeypatch.setattr(credits.services.debits, "SINGLE_STATEMENT_DEBIT", not portable)
    fund(10, source=GrantSource.PROMOTION, expires_at=timezone.now() + timedelta(hours=1))
    bought = fund(5)
    _expire_promotion_without_the_job()

    with pytest.raises(services.InsufficientCredits) as refused:
        _consume(org, 6, key="too-much")
    assert refused.value.available == 5
    entry = _consume(org, 5, key="ok")
    assert entry.draws() == [(bought.allocations.get().grant_id, -5)]
    assert CreditGrant.objects.get(source="promotion").remaining == 10  # left for the expiry job
    services.credit_grants_expire()
    assert balance_of(org) == 0
    assert_reconciles()


def test_it_never_reserves_credits_of_a_grant_past_its_expiry(org, fund):
    fund(10, source=GrantSource.PROMOTION, expires_at=timezone.now() + timedelta(hours=1))
    fund(5)
    _expire_promotion_without_the_job()
    with pytest.raises(services.InsufficientCredits):
        services.credit_reservation_create(organization=org, amount=6, idempotency_key="r1")
    services.credit_reservation_create(organization=org, amount=5, idempotency_key="r2")
    with pytest.raises(services.InsufficientCredits):
        _consume(org, 1, key="beside-the-hold")


def test_a_confirmed_hold_draws_first_what_it_kept_of_a_grant_that_expired_meanwhile(org, fund):
    # Held while the promotion was valid, the 8 would have come from it (the soonest to expire)
    # had the work finished at once. Finishing after its expiry must not cost the customer 8
    # bought credits instead: the hold kept the promotion's credits, and the confirm spends them.
    promotion = fund(10, source=GrantSource.PROMOTION, expires_at=timezone.now() + timedelta(hours=1))
    fund(10)
    held = services.credit_reservation_create(organization=org, amount=8, idempotency_key="r")
    _expire_promotion_without_the_job()
    confirmed = services.credit_reservation_confirm(reservation=held, amount=8)
    assert confirmed.transaction.draws() == [(promotion.allocations.get().grant_id, -8)]
    services.credit_grants_expire()
    assert balance_of(org) == 10
    assert_reconciles()


def test_a_hold_confirmed_for_less_expires_the_rest_it_kept_of_an_expired_grant(org, fund):
    fund(10, source=GrantSource.PROMOTION, expires_at=timezone.now() + timedelta(hours=1))
    fund(10)
    held = services.credit_reservation_create(organization=org, amount=8, idempotency_key="r")
    _expire_promotion_without_the_job()
    services.credit_reservation_confirm(reservation=held, amount=3)
    # What the promotion had left (7) is not spendable for a moment: it goes with the release.
    account = CreditAccount.objects.get(organization=org)
    assert (account.balance, account.held, account.available) == (10, 0, 10)
    assert_reconciles()


def test_a_cancelled_hold_does_not_bring_back_credits_of_a_grant_that_expired_meanwhile(org, fund):
    fund(10, source=GrantSource.PROMOTION, expires_at=timezone.now() + timedelta(hours=1))
    fund(10)
    held = services.credit_reservation_create(organization=org, amount=15, idempotency_key="r")
    _expire_promotion_without_the_job()
    services.credit_reservation_cancel(reservation=held)
    account = CreditAccount.objects.get(organization=org)
    assert (account.balance, account.held, account.available) == (10, 0, 10)
    assert_reconciles()


def test_the_welcome_bonus_is_a_setting_with_an_optional_expiry(org, settings):
    settings.CREDITS_WELCOME_BONUS, settings.CREDITS_WELCOME_BONUS_DAYS = 250, 30
    account = services.credit_account_for(organization=org)
    assert account.balance == 250
    grant = CreditGrant.objects.get(account=account)
    assert timedelta(days=29) < grant.expires_at - timezone.now() <= timedelta(days=30)


def test_no_bonus_when_the_setting_is_zero(org, settings):
    settings.CREDITS_WELCOME_BONUS = 0
    account = services.credit_account_for(organization=org)
    assert account.balance == 0 and not CreditTransaction.objects.filter(account=account).exists()
