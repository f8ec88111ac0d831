"""The credit invariants, checked on live data (`credits_reconcile`).

- I2: every account reconciles: balance = sum of its ledger = remaining grants, held = open
  reservations (so what can be spent, balance - held, is remaining grants - held);
- I3: what an organization can spend is at most what it paid for and was not refunded, plus
  the free credits that were due: what was deliberately given (the welcome bonus, promotions,
  staff adjustments) and the allowances of paid periods and of at most one trial.

"Paid" is Stripe's word, read through the API, not Tally's own records: a purchase counts with
the part of its charge that was not refunded; an allowance counts when an invoice that Stripe
has as paid covers the period it was granted for (and was not refunded in full, unless the
subscription is still live), or when the period was the organization's first trial.

Spent credits are not part of the bound: credits a customer spent and then had refunded in
money stay spent; a consumption refund brings back credits of the grants it drew from, which
the bound already counts once.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Sum

from billing.reconcile import LIVE_STATUSES, Breach, customers_of
from billing.stripe_client import stripe_client
from credits import selectors, services
from credits.models import (
    CreditAccount,
    CreditPurchase,
    CreditRecharge,
    CreditTransaction,
    PurchaseStatus,
    RechargeStatus,
    TransactionType,
)
from teams.models import Organization

GIVEN = (TransactionType.BONUS, TransactionType.PROMOTION, TransactionType.ADJUSTMENT)


@dataclass(frozen=True)
class Due:
    """The most an organization may be able to spend, and where it comes from."""

    given: int
    paid: int
    allowances: int
    trial: int

    @property
    def total(self) -> int:
        return self.given + self.paid + self.allowances + self.trial


def _kept(credits: int, amount: int, refunded: int) -> int:
    """Credits of a purchase that its unrefunded money pays for (a refund takes back its share,
    rounded up, as the clawback does)."""
    if amount <= 0:
        return credits
    refunded = min(max(refunded, 0), amount)
    return credits - (-(-credits * refunded // amount))


def _charges_by_intent(customer_id: str) -> dict[str, object]:
    listed = stripe_client().v1.charges.list({"customer": customer_id, "limit": 100})
    return {c.payment_intent: c for c in listed.auto_paging_iter() if c.payment_intent}


def _paid_share(charges: dict, payment_intent_id: str | None, credits: int, amount: int) -> int:
    charge = charges.get(payment_intent_id or "")
    if charge is None or charge.status != "succeeded" or not charge.paid:
        return 0
    # Disputes (lost) will take their share here too, once Tally handles them.
    return _kept(credits, amount, charge.amount_refunded)


def _allowance_key(key: str) -> tuple[str, int] | None:
    parts = key.split(":")
    if len(parts) != 3 or parts[0] != "allowance":
        return None
    try:
        return parts[1], int(parts[2])
    except ValueError:
        return None


def _invoice_intents(invoice) -> list[str]:
    intents = []
    for payment in (invoice.get("payments") or {}).get("data", []):
        intent = (payment.get("payment") or {}).get("payment_intent")
        if intent:
            intents.append(intent if isinstance(intent, str) else intent.get("id"))
    return intents


def credits_due(*, organization: Organization, customer_id: str | None) -> Due:
    account = CreditAccount.objects.filter(organization=organization).first()
    if account is None:
        return Due(0, 0, 0, 0)
    ledger = CreditTransaction.objects.filter(account=account)
    given = ledger.filter(type__in=GIVEN, amount__gt=0).aggregate(s=Sum("amount"))["s"] or 0
    if not customer_id:
        return Due(given, 0, 0, 0)
    client = stripe_client()
    charges = _charges_by_intent(customer_id)
    paid = 0
    for purchase in CreditPurchase.objects.filter(account=account, status=PurchaseStatus.COMPLETED):
        paid += _paid_share(charges, purchase.payment_intent_id, purchase.total_credits, purchase.amount)
    for recharge in CreditRecharge.objects.filter(account=account, status=RechargeStatus.SUCCEEDED):
        paid += _paid_share(charges, recharge.payment_intent_id, recharge.credits, recharge.amount)

    allowances = trial = 0
    trial_counted = False
    subscriptions: dict[str, object] = {}
    invoices: dict[str, list] = {}
    for entry in ledger.filter(type=TransactionType.ALLOWANCE, amount__gt=0).order_by("pk"):
        parsed = _allowance_key(entry.idempotency_key)
        if parsed is None:
            continue
        sub_id, start = parsed
        if sub_id not in subscriptions:
            subscriptions[sub_id] = client.v1.subscriptions.retrieve(sub_id)
            invoices[sub_id] = list(
                client.v1.invoices.list({"subscription": sub_id, "limit": 100}).auto_paging_iter()
            )
        remote = subscriptions[sub_id]
        if remote.trial_start and remote.trial_end and remote.trial_start <= start < remote.trial_end:
            if not trial_counted:
                trial_counted = True
                trial += entry.amount
            continue
        for invoice in invoices[sub_id]:
            if invoice.status != "paid":
                continue
            covers = any(line.period.start <= start < line.period.end for line in invoice.lines.data)
            if not covers:
                continue
            refunded_in_full = invoice.amount_paid > 0 and all(
                (c := charges.get(pi)) is not None and c.amount_refunded >= c.amount
                for pi in _invoice_intents(invoice)
            )
            if not refunded_in_full or remote.status in LIVE_STATUSES:
                allowances += entry.amount
                break
    return Due(given, paid, allowances, trial)


def _customer_ids(organizations) -> dict[int, str]:
    return {org.pk: customer for org, customer in customers_of(organizations)}


def ledger_check(*, organizations: Iterable[Organization] | None = None, fix: bool = False) -> list[Breach]:
    """I2 for the accounts of `organizations` (every account without). With `fix`, holds whose
    time ran out are released first (the periodic job), which is the one repair that is safe."""
    accounts = CreditAccount.objects.select_related("organization")
    if organizations is not None:
        accounts = accounts.filter(organization__in=list(organizations))
    by_id = {a.pk: a for a in accounts}
    problems = selectors.reconciliation_problems(account_ids=list(by_id))
    fixed = ""
    if fix and problems:
        released = services.credit_reservations_expire()
        fixed = f"released {released} expired hold(s)"
        problems = selectors.reconciliation_problems(account_ids=list(by_id))
    return [
        Breach(
            by_id[p.account_id].organization,
            "I2",
            f"{p.check}: expected {p.expected}, found {p.actual}",
            fixed,
        )
        for p in problems
    ]


def spendable_check(*, organizations: Iterable[Organization] | None = None) -> list[Breach]:
    """I3: spendable (balance - held) <= paid and not refunded + free credits that were due.
    Never fixed automatically: taking credits back is a decision for a person."""
    accounts = CreditAccount.objects.select_related("organization").order_by("pk")
    if organizations is not None:
        accounts = accounts.filter(organization__in=list(organizations))
    accounts = list(accounts)
    customers = _customer_ids([a.organization for a in accounts])
    breaches = []
    for account in accounts:
        due = credits_due(
            organization=account.organization, customer_id=customers.get(account.organization_id)
        )
        if account.available > due.total:
            breaches.append(
                Breach(
                    account.organization,
                    "I3",
                    f"can spend {account.available} credits but only {due.total} were paid for or due "
                    f"(given {due.given}, paid {due.paid}, allowances {due.allowances}, trial {due.trial})",
                )
            )
    return breaches


def credit_invariants_check(
    *, organizations: Iterable[Organization] | None = None, fix: bool = False
) -> list[Breach]:
    organizations = list(organizations) if organizations is not None else None
    return ledger_check(organizations=organizations, fix=fix) + spendable_check(organizations=organizations)
