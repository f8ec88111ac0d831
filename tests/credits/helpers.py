from credits import selectors
from credits.models import CreditAccount


def balance_of(org) -> int:
    return CreditAccount.objects.get(organization=org).balance


def assert_reconciles():
    assert selectors.reconciliation_problems() == []
