"""The credit invariants, checked on live data (`credits_reconcile`).

- I2: every account reconciles: balance = sum of its ledger = remaining grants, held = open
  reservations (so what can be spent, balance - held, is remaining grants - held);
- I3: what an organization can spend is at most what it paid for and was not refunded, plus
  the free credits that were due: what was deliberately given (the welcome bonus, promotions,
  staff adjustments) and the allowances of paid periods and of at most one trial.

The bound is taken over the grants that have not expired, each for its whole amount (a
consumption refund refills the grant it drew from). "Paid" is Stripe's word, read through the
API, not Tally's own records: a purchase counts with the part of its charge that was not
refunded, nor withdrawn by a dispute that was lost or is still open (Tally freezes an open
dispute's credits: what can be spent is balance - held - frozen); an allowance counts when an
invoice Stripe has as paid covers the period it was granted for (and was not refunded in
full, unless the subscription is still live), or when the period was the organization's first
trial. Spent credits are not part of the bound: credits a customer spent and then had refunded
in money stay spent.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from billing.gateway.client import stripe_client
from billing.gateway.invoices import invoice_lines_all
from billing.reconcile import Breach, customers_of
from billing.subscriptions.sync import LIVE_STATUSES
from credits import selectors
from credits.allowance_keys import allowance_key_parse
from credits.models import (
    CreditAccount,
    CreditAllocation,
    CreditGrant,
    CreditPurchase,
    CreditRecharge,
    CreditTransaction,
    GrantSource,
    TransactionType,
)
from teams.models import Organization
from teams.services import audit_record


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


def _withdrawn(charge) -> int:
    """The money of a disputed charge that the card network took and did not give back: every
    dispute that is lost, or still open (its funds withdrawn until it is won)."""
    if not charge.get("disputed"):
        return 0
    listed = stripe_client().v1.disputes.list({"charge": charge.id, "limit": 100})
    return sum(d.amount for d in listed.auto_paging_iter() if d.status not in ("won", "warning_closed"))


def _paid_share(charges: dict, payment_intent_id: str | None, credits: int, amount: int) -> int:
    charge = charges.get(payment_intent_id or "")
    if charge is None or charge.status != "succeeded" or not charge.paid:
        return 0
    # Each return of money takes back its own share, rounded up, as its clawback does; a
    # dispute's is its share of the charge (`credit_dispute_record`).
    kept = _kept(credits, amount, charge.amount_refunded)
    withdrawn = _withdrawn(charge)
    if withdrawn and amount > 0:
        kept -= -(-credits * min(withdrawn, amount) // amount)
    return max(kept, 0)


def _invoice_intents(invoice) -> list[str]:
    intents = []
    for payment in (invoice.get("payments") or {}).get("data", []):
        intent = (payment.get("payment") or {}).get("payment_intent")
        if intent:
            intents.append(intent if isinstance(intent, str) else intent.get("id"))
    return intents


def _creating_entries(grants: list[CreditGrant]) -> dict[int, CreditTransaction]:
    """The ledger line that created each grant: its first positive allocation."""
    first: dict[int, CreditTransaction] = {}
    rows = (
        CreditAllocation.objects.filter(grant__in=grants, amount__gt=0)
        .select_related("transaction")
        .order_by("grant_id", "pk")
    )
    for allocation in rows:
        first.setdefault(allocation.grant_id, allocation.transaction)
    return first


def credits_due(*, organization: Organization, customer_id: str | None, now: datetime | None = None) -> Due:
    """What the organization's grants that have not expired (at `now`) may hold at most: each
    grant's amount if it was given, paid for or due, its unrefunded share if it was bought.
    A grant's amount, not what remains of it: a consumption refund refills the grant it drew
    from. A refund grant (a consumption refunded after its grant expired) counts as given."""
    now = now or timezone.now()
    account = CreditAccount.objects.filter(organization=organization).first()
    if account is None:
        return Due(0, 0, 0, 0)
    grants = list(
        CreditGrant.objects.filter(organization_id=account.organization_id)
        .exclude(expires_at__lte=now)
        .order_by("created_at", "pk")
    )
    entries = _creating_entries(grants)
    client = stripe_client() if customer_id else None
    charges = _charges_by_intent(customer_id) if customer_id else {}
    purchases = {
        p.transaction_id: p for p in CreditPurchase.objects.filter(organization_id=account.organization_id)
    }
    recharges = {
        r.transaction_id: r for r in CreditRecharge.objects.filter(organization_id=account.organization_id)
    }
    given = paid = allowances = trial = 0
    subscriptions: dict[str, object] = {}
    invoices: dict[str, list] = {}
    first_trial = _first_trial_entry(account)
    for grant in grants:
        entry = entries.get(grant.pk)
        if entry is None:
            continue
        if grant.source in (
            GrantSource.BONUS,
            GrantSource.PROMOTION,
            GrantSource.ADJUSTMENT,
            GrantSource.REFUND,
        ):
            given += grant.amount
        elif grant.source == GrantSource.PURCHASE:
            bought = purchases.get(entry.pk) or recharges.get(entry.pk)
            if bought is None or client is None:
                continue  # granted as a purchase with no payment behind it
            credits = bought.total_credits if isinstance(bought, CreditPurchase) else bought.credits
            paid += min(grant.amount, _paid_share(charges, bought.payment_intent_id, credits, bought.amount))
        elif grant.source == GrantSource.SUBSCRIPTION_ALLOWANCE and client is not None:
            parsed = allowance_key_parse(entry.idempotency_key)
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
                if first_trial is not None and entry.pk == first_trial:
                    trial += grant.amount  # one trial per organization
                continue
            allowances += _period_due(
                invoices[sub_id], charges, start, grant.amount, live=remote.status in LIVE_STATUSES
            )
    return Due(given, paid, allowances, trial)


def _first_trial_entry(account: CreditAccount) -> int | None:
    """The ledger line of the organization's first trial allowance (by Stripe's trial window)."""
    client = None
    for entry in CreditTransaction.objects.filter(
        organization_id=account.organization_id, type=TransactionType.ALLOWANCE, amount__gt=0
    ).order_by("pk"):
        parsed = allowance_key_parse(entry.idempotency_key)
        if parsed is None:
            continue
        client = client or stripe_client()
        remote = client.v1.subscriptions.retrieve(parsed[0])
        if remote.trial_start and remote.trial_end and remote.trial_start <= parsed[1] < remote.trial_end:
            return entry.pk
    return None


def _period_due(invoices: list, charges: dict, start: int, credits: int, *, live: bool) -> int:
    """Of a period's allowance of `credits`, what its payment covers: all of it when an invoice
    Stripe has as paid covers the period starting at `start` and its money was neither refunded
    in full (unless the subscription goes on: a goodwill refund ends nothing) nor withdrawn by
    a dispute that is open or lost (then only the share of the money kept)."""
    for invoice in invoices:
        if invoice.status != "paid":
            continue
        if not any(line.period.start <= start < line.period.end for line in invoice_lines_all(invoice)):
            continue
        if invoice.amount_paid <= 0:
            return credits
        # Lists leave an invoice's payments out: read them, as `invoice_record` does.
        full = stripe_client().v1.invoices.retrieve(
            invoice.id, {"expand": ["payments.data.payment.payment_intent"]}
        )
        paid_by = [charges.get(pi) for pi in _invoice_intents(full)]
        refunded_in_full = bool(paid_by) and all(
            c is not None and c.amount_refunded >= c.amount for c in paid_by
        )
        if refunded_in_full and not live:
            continue
        withdrawn = min(sum(_withdrawn(c) for c in paid_by if c is not None), invoice.amount_paid)
        # The same share, rounded up, as the dispute's hold (`credit_dispute_record`).
        return credits - -(-credits * withdrawn // invoice.amount_paid)
    return 0


def _customer_ids(organizations) -> dict[int, str]:
    return {org.pk: customer for org, customer in customers_of(organizations)}


def _repair_cached_balance(account: CreditAccount) -> str:
    """The cached balance disagrees with a ledger and grants that agree with each other: the
    cache is what is wrong, and is set back to the ledger's sum (audited). Anything else (the
    ledger and the grants disagree) needs a person."""
    with transaction.atomic():
        locked = CreditAccount.objects.select_for_update().get(pk=account.pk)
        ledger = (
            CreditTransaction.objects.filter(organization_id=locked.organization_id).aggregate(
                s=Sum("amount")
            )["s"]
            or 0
        )
        grants = (
            CreditGrant.objects.filter(organization_id=locked.organization_id).aggregate(s=Sum("remaining"))[
                "s"
            ]
            or 0
        )
        if ledger == locked.balance or grants != max(ledger, 0):
            return ""
        before = locked.balance
        CreditAccount.objects.filter(pk=locked.pk).update(balance=ledger)
        audit_record(
            organization=locked.organization,
            action="credits.balance_reconciled",
            target=str(locked.pk),
            data={"cached": before, "ledger": ledger},
        )
    return f"cached balance {before} set to the ledger's {ledger}"


def ledger_check(*, organizations: Iterable[Organization] | None = None, fix: bool = False) -> list[Breach]:
    """I2 for the accounts of `organizations` (every account without). With `fix`, a cached
    balance that alone disagrees with the ledger and the grants is set back to the ledger."""
    accounts = CreditAccount.objects.select_related("organization")
    if organizations is not None:
        accounts = accounts.filter(organization__in=list(organizations))
    by_id = {a.pk: a for a in accounts}
    problems = selectors.reconciliation_problems(account_ids=list(by_id))
    breaches = []
    if fix and problems:
        for account_id in sorted({p.account_id for p in problems}):
            done = _repair_cached_balance(by_id[account_id])
            if done:
                breaches.append(
                    Breach(by_id[account_id].organization, "I2", "balance differed from the ledger", done)
                )
        problems = selectors.reconciliation_problems(account_ids=list(by_id))
    breaches += [
        Breach(by_id[p.account_id].organization, "I2", f"{p.check}: expected {p.expected}, found {p.actual}")
        for p in problems
    ]
    return breaches


def spendable_check(
    *, organizations: Iterable[Organization] | None = None, now: datetime | None = None
) -> list[Breach]:
    """I3: spendable (balance - held - frozen) <= paid and not refunded + free credits that were due.
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
