"""A debit that takes its whole amount from one grant names the grant on its ledger line and
writes no allocation row; any other debit writes its allocations. The three debit paths (the
one-trip statement outside a transaction, the single statement inside one, the portable path)
must agree, and refunds and the reconciliation read both forms."""

import pytest
from django.db import transaction

import credits.services.debits
from credits import selectors, services
from credits.models import CreditAccount, CreditAllocation, CreditGrant, CreditTransaction, GrantSource
from tests.credits.helpers import assert_reconciles, balance_of

PATHS = ["one_trip", "statement", "portable"]


def _grant(entry) -> CreditGrant:
    return CreditGrant.objects.get(allocations__transaction=entry)


def _consume(org, path, amount, key):
    if path == "one_trip":
        return services.credits_consume(organization=org, amount=amount, idempotency_key=key)
    with transaction.atomic():
        return services.credits_consume(organization=org, amount=amount, idempotency_key=key)


def _stored(entry) -> tuple[int | None, list[tuple[int, int]]]:
    rows = CreditAllocation.objects.filter(transaction_id=entry.pk).order_by("pk")
    named = CreditTransaction.objects.values_list("grant_id", flat=True).get(pk=entry.pk)
    return named, list(rows.values_list("grant_id", "amount"))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", PATHS)
def test_a_debit_from_one_grant_names_it_and_any_other_writes_allocations(org, fund, monkeypatch, path):
    monkeypatch.setattr(credits.services.debits, "SINGLE_STATEMENT_DEBIT", path != "portable")
    bonus = _grant(fund(10, source=GrantSource.BONUS))
    bought = _grant(fund(20))

    within = _consume(org, path, 4, "within-the-bonus")
    assert within.grant_id == bonus.pk
    assert _stored(within) == (bonus.pk, [])
    assert within.draws() == [(bonus.pk, -4)]

    across = _consume(org, path, 10, "across-two")
    assert across.grant_id is None
    assert _stored(across) == (None, [(bonus.pk, -6), (bought.pk, -4)])

    # Into the overdraft: one grant, but not the whole amount, so the draw is an allocation.
    CreditAccount.objects.filter(organization=org).update(overdraft_allowance=5)
    short = _consume(org, path, 18, "into-the-overdraft")
    assert (short.balance_after, short.grant_id) == (-2, None)
    assert _stored(short) == (None, [(bought.pk, -16)])
    assert_reconciles()

    # A refund goes back to the grant the line names.
    services.credits_refund(consumption=within, amount=3)
    assert CreditGrant.objects.get(pk=bonus.pk).remaining == 3 - 2  # the overdraft is repaid first
    assert balance_of(org) == 1
    assert_reconciles()


def test_the_reconciliation_counts_what_lines_name(org, fund):
    bought = _grant(fund(20))
    entry = services.credits_consume(organization=org, amount=5, idempotency_key="k")
    assert entry.grant_id == bought.pk
    assert_reconciles()
    # The grant's remaining agrees with its allocations only once the named line counts.
    CreditTransaction.objects.filter(pk=entry.pk).update(grant=None)
    problems = selectors.reconciliation_problems()
    assert [(p.check, p.expected, p.actual) for p in problems] == [
        (f"grant {bought.pk} remaining = its allocations", 20, 15)
    ]
