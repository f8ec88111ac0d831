"""The model-based test of the whole billing lifecycle (issue 11).

A Hypothesis state machine whose rules are Tally's public operations (services) and Stripe's own
moves through the simulator (hosted checkout, dashboard calls through the SDK, test-clock
advances, outages, card declines, disputes won and lost) and whose webhook deliveries the
machine hands to dj-stripe's endpoint when and as often as it likes. After every step it
checks the README's promises:

- I1 at most one live Stripe subscription per organization, and it is the one Tally tracks;
- I2 every credit account reconciles (balance = ledger = remaining grants, held = open holds);
- I3 spendable credits <= paid and not refunded + free credits that were due;
- I4 once reporting ran with Stripe healthy, each billed meter's Stripe total = recorded usage;
- I5 once seat sync ran, Stripe's seat quantity = billable members;
- I6 entitlement decisions = the small model in model.py;
- I7 no handler raises on any delivery, in any order, any number of times;
- I8 each day of usage the charts and totals read equals the sum of its events.

I1 and I3-I6 hold once Tally has heard everything Stripe said (no delivery pending), which is
when they are checked; I1's "at most one live", I2, I7 and I8 hold at every step. I1-I5 are the
same checks `billing_reconcile` and `credits_reconcile` run on live data.

`make test` runs a bounded number of examples from a fixed seed; `make soak` as many as asked
(see conftest.py for the profiles). A failure prints its seed (`@seed(...)`) and the steps.
"""

import contextlib
import itertools
import os
from datetime import UTC, datetime, timedelta

import hypothesis
import hypothesis.strategies as st
import pytest
import stripe
from celery.exceptions import Retry
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import transaction
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    get_state_machine_test,
    invariant,
    multiple,
    precondition,
    rule,
)

from billing import catalog, entitlements, metering, reconcile, seats, subscriptions
from billing.gateway.client import stripe_client
from billing.gateway.customers import customer_ensure
from billing.gateway.setup import stripe_webhook_endpoint_ensure
from billing.models import MeterReport, OrgSubscription, Plan
from billing.seats import billable_seats
from common.errors import ServiceError
from credits import reconcile as credit_reconcile
from credits import services as credit_services
from credits.models import CreditPackage, CreditReservation, CreditTransaction
from teams import services as team_services
from teams.models import Membership, Role
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory
from tests.invariants.model import PLANS as MODEL_PLANS
from tests.invariants.model import EntitlementModel, Pending, is_upgrade
from tests.invariants.world import (
    CARD_DECLINED,
    CARD_DISPUTED,
    CARD_OK,
    Deliveries,
    committing,
    pay_checkout,
)

pytestmark = pytest.mark.django_db

PLANS = ["pro_monthly", "ai_monthly", "team_monthly"]
CHANGES = ["pro_monthly", "pro_yearly", "ai_monthly", "team_monthly"]
PACKAGES = [("inv-small", 1_000, 0, 1_000), ("inv-large", 10_000, 500, 8_000)]
_numbers = itertools.count()
# Stripe usually delivers within seconds and most cards work: the rare cases stay reachable.
DELIVER = st.sampled_from([True, True, True, False])
DECLINED = st.sampled_from([False, False, False, True])


def note(text: str) -> None:
    """Hypothesis's note, which a plain test driving the machine step by step goes without."""
    with contextlib.suppress(InvalidArgument):
        hypothesis.note(text)


def model_interval(plan: str) -> str:
    return MODEL_PLANS[plan]["interval"]


def _sim_app():
    return _SIM[0]


_SIM: list = []  # the simulator app of the running test (set by the test function)
# Examples begun and invariant checks made: the checks run once after set-up and once after
# every step, so the steps taken are the difference.
_RUN = {"examples": 0, "checks": 0}


class LifecycleMachine(RuleBasedStateMachine):
    consumptions = Bundle("consumptions")
    reservations = Bundle("reservations")

    # --- the world --------------------------------------------------------------------------

    def __init__(self):
        super().__init__()
        _RUN["examples"] += 1
        self.sim = _sim_app()
        # Each example runs in a savepoint rolled back at teardown, and on a fresh simulator.
        self.savepoint = transaction.savepoint()
        cache.clear()
        self.sim.store.reset()
        self.sim.store.config.outage = None
        catalog.catalog_push()
        endpoint = stripe_webhook_endpoint_ensure(site_url="http://127.0.0.1:9")
        with self.sim.store.lock:
            # The machine is Stripe's delivery service: the simulator sends nothing itself.
            for remote in self.sim.store.all("webhook_endpoint"):
                self.sim.store.delete(remote)
        self.stripe = stripe_client()
        self.now = datetime.now(tz=UTC).replace(microsecond=0)
        self.clock = self.stripe.v1.test_helpers.test_clocks.create(
            {"frozen_time": int(self.now.timestamp())}
        )
        n = next(_numbers)
        self.org = OrganizationFactory(name=f"Machine {n}", slug=f"machine-{n}")
        self.owner = MembershipFactory(
            organization=self.org, role=Role.OWNER, user__email=f"owner{n}@example.com"
        )
        for code, credits, bonus, amount in PACKAGES:
            CreditPackage.objects.update_or_create(
                code=code,
                defaults={"name": code, "credits": credits, "bonus_credits": bonus, "unit_amount": amount},
            )
        with committing():
            self.customer = customer_ensure(organization=self.org, test_clock=self.clock.id)
            credit_services.credit_account_for(organization=self.org)
        self.deliveries = Deliveries(sim=self.sim, endpoint=endpoint)
        self.deliveries.collect()
        self.deliveries.pending.clear()  # the catalog and the customer: nothing for Tally
        self.model = EntitlementModel()
        self.open_checkouts: list[str] = []
        self.outage = False
        # The billing basis (plan, anchor) the last complete report covered; None: usage moved
        # since. A new plan or anchor can make an existing period's counter billable, and it is
        # owed to Stripe only from the next report run on.
        self.reported_for = self._billing_basis()  # no usage yet
        self.seats_synced = True
        self.n = n

    def teardown(self):
        try:
            if not self.outage:
                self.deliveries.deliver_all()
                self.deliveries.retry_failed()
        finally:
            self.sim.store.config.outage = None
            transaction.savepoint_rollback(self.savepoint)
            cache.clear()

    # --- helpers ----------------------------------------------------------------------------

    def _key(self, prefix: str) -> str:
        return f"{prefix}-{self.n}-{next(_numbers)}"

    def _tally(self, call, *, allowed=(ServiceError,)):
        """Run a public operation of Tally's as a request would (committing at the end). Business
        refusals, declined cards and an outage are outcomes; anything else is a defect."""
        try:
            with committing():
                return call()
        except allowed as error:
            note(f"  -> refused: {getattr(error, 'code', '')} {error}")
        except stripe.CardError as error:
            note(f"  -> card declined: {error.user_message}")
        except stripe.StripeError as error:
            if not self.outage:
                raise
            note(f"  -> Stripe is down: {type(error).__name__}")
        except Retry as retry:
            # A follow-up task met Stripe's outage after the commit and asked to run again later;
            # a worker would schedule it, eager tasks hand the request back to the caller.
            if not self.outage:
                raise
            note(f"  -> a follow-up task will retry: {retry}")
        return None

    def _stripe_moved(self, deliver: bool) -> None:
        """Stripe created events: deliver them now (as Stripe usually does within seconds), or
        leave them for the delivery rules (delayed, reordered)."""
        self.deliveries.collect()
        if deliver and not self.outage:
            self.deliveries.deliver_all()

    def _subscribed(self) -> bool:
        local = self._local()
        return bool(local and local.stripe_subscription_id and local.applies)

    def _local(self) -> OrgSubscription | None:
        return OrgSubscription.objects.select_related("plan").filter(organization=self.org).first()

    def _billing_basis(self) -> tuple | None:
        local = self._local()
        if local is None or not local.applies:
            return ("unbilled",)
        return (local.plan_id, local.billing_cycle_anchor)

    def _live(self) -> list:
        return reconcile.live_subscriptions(self.customer)

    def _all_subscriptions(self) -> list:
        listed = self.stripe.v1.subscriptions.list({"customer": self.customer, "status": "all"})
        return list(listed.auto_paging_iter())

    def _charges(self) -> list:
        return list(self.stripe.v1.charges.list({"customer": self.customer, "limit": 100}).auto_paging_iter())

    # --- subscriptions ----------------------------------------------------------------------

    @rule(plan=st.sampled_from(PLANS))
    def start_checkout(self, plan):
        """A person opens checkout (maybe in a second tab, with the first still open)."""
        url = self._tally(
            lambda: subscriptions.checkout_start(
                organization=self.org, plan=Plan.objects.get(key=plan), actor=self.owner.user
            )
        )
        if url:
            self.open_checkouts.append(url)
        self._stripe_moved(True)

    @rule(plan=st.sampled_from(PLANS), declined=DECLINED)
    def subscribe(self, plan, declined):
        """Checkout, paid on the hosted page at once (a trial where the plan has one)."""
        url = self._tally(
            lambda: subscriptions.checkout_start(
                organization=self.org, plan=Plan.objects.get(key=plan), actor=self.owner.user
            )
        )
        if url:
            note(f"  -> hosted checkout answered {pay_checkout(url, CARD_DECLINED if declined else CARD_OK)}")
        self._stripe_moved(True)

    @precondition(lambda self: self.open_checkouts)
    @rule(index=st.integers(0, 3), declined=DECLINED, deliver=DELIVER)
    def pay_checkout(self, index, declined, deliver):
        url = self.open_checkouts.pop(index % len(self.open_checkouts))
        status = pay_checkout(url, CARD_DECLINED if declined else CARD_OK)
        note(f"  -> hosted checkout answered {status}")
        if declined and status == 402:
            self.open_checkouts.append(url)  # the page stays open for another card
        self._stripe_moved(deliver)

    @precondition(lambda self: self._subscribed())
    @rule(plan=st.sampled_from(CHANGES), deliver=DELIVER)
    def change_plan(self, plan, deliver):
        local = self._local()
        current = local.plan.key if local else None
        seats_now = billable_seats(self.org)
        done = self._tally(
            lambda: subscriptions.subscription_change(
                organization=self.org, plan=Plan.objects.get(key=plan), actor=self.owner.user
            )
        )
        if done is not None and current and current != plan and not is_upgrade(current, plan, seats_now):
            self.model.pending[done.stripe_subscription_id] = Pending(current, plan, local.current_period_end)
        elif done is not None and done.stripe_subscription_id in self.model.pending:
            del self.model.pending[done.stripe_subscription_id]
        self._stripe_moved(deliver)

    @precondition(lambda self: self._subscribed())
    @rule(deliver=DELIVER)
    def cancel_at_period_end(self, deliver):
        self._tally(lambda: subscriptions.subscription_cancel(organization=self.org, actor=self.owner.user))
        self._stripe_moved(deliver)

    @precondition(lambda self: self._subscribed())
    @rule(deliver=DELIVER)
    def resume(self, deliver):
        self._tally(lambda: subscriptions.subscription_resume(organization=self.org, actor=self.owner.user))
        self._stripe_moved(deliver)

    @precondition(lambda self: self._subscribed())
    @rule(deliver=DELIVER)
    def money_back_refund(self, deliver):
        self._tally(
            lambda: subscriptions.subscription_refund_and_cancel(
                organization=self.org, actor=self.owner.user, now=self.now
            )
        )
        self._stripe_moved(deliver)

    @precondition(lambda self: not self.outage)
    @rule(which=st.integers(0, 3), deliver=DELIVER)
    def cancel_now_from_the_dashboard(self, which, deliver):
        live = self._live()
        if live:
            self.stripe.v1.subscriptions.cancel(live[which % len(live)].id)
        self._stripe_moved(deliver)

    # --- seats ------------------------------------------------------------------------------

    @rule()
    def member_joins(self):
        n = next(_numbers)
        user = UserFactory(email=f"m{self.n}-{n}@example.com")

        def join():
            invitation = team_services.invitation_create(
                organization=self.org, actor=self.owner.user, email=user.email, role=Role.MEMBER
            )
            return team_services.invitation_accept(invitation=invitation, user=user)

        self.seats_synced = False
        self._tally(join)
        self._stripe_moved(True)

    @rule(index=st.integers(0, 20))
    def member_leaves(self, index):
        members = list(
            Membership.objects.filter(organization=self.org).exclude(role=Role.OWNER).order_by("pk")
        )
        if not members:
            return
        self.seats_synced = False
        leaving = members[index % len(members)]
        self._tally(lambda: team_services.membership_remove(membership=leaving, actor=self.owner))
        self._stripe_moved(True)

    @rule()
    def seat_sync_runs(self):
        """The seat sync task (its retries included) once more."""
        done = self._tally(
            lambda: seats.seat_sync(organization_id=self.org.pk) or True, allowed=(seats.SyncBusy,)
        )
        if done and not self.outage:
            self.seats_synced = True
        self._stripe_moved(True)

    # --- credits ----------------------------------------------------------------------------

    @rule(package=st.sampled_from([p[0] for p in PACKAGES]), declined=DECLINED, deliver=DELIVER)
    def buy_credits(self, package, declined, deliver):
        started = self._tally(
            lambda: credit_services.credit_purchase_start(
                organization=self.org, package=CreditPackage.objects.get(code=package), actor=self.owner.user
            )
        )
        if started:
            status = pay_checkout(started[1], CARD_DECLINED if declined else CARD_OK)
            note(f"  -> hosted checkout answered {status}")
        self._stripe_moved(deliver)

    @rule(target=consumptions, amount=st.sampled_from([1, 50, 400, 1_000, 6_000]))
    def consume(self, amount):
        entry = self._tally(
            lambda: credit_services.credits_consume(
                organization=self.org, amount=amount, idempotency_key=self._key("consume")
            ),
            allowed=(credit_services.InsufficientCredits, ServiceError),
        )
        return entry.pk if entry else multiple()

    @rule(consumption=consumptions, part=st.booleans())
    def refund_consumption(self, consumption, part):
        if consumption is None:
            return
        entry = CreditTransaction.objects.get(pk=consumption)
        amount = max(1, -entry.amount // 2) if part else None
        self._tally(
            lambda: credit_services.credits_refund(
                consumption=entry, amount=amount, idempotency_key=self._key("refund")
            )
        )

    @rule(target=reservations, amount=st.sampled_from([10, 600, 6_000]))
    def reserve(self, amount):
        held = self._tally(
            lambda: credit_services.credit_reservation_create(
                organization=self.org, amount=amount, idempotency_key=self._key("hold")
            ),
            allowed=(credit_services.InsufficientCredits, ServiceError),
        )
        return held.pk if held else multiple()

    @rule(reservation=reservations, part=st.booleans())
    def confirm(self, reservation, part):
        if reservation is None:
            return
        held = CreditReservation.objects.get(pk=reservation)
        amount = held.amount // 2 if part else None
        self._tally(lambda: credit_services.credit_reservation_confirm(reservation=held, amount=amount))

    @rule(reservation=reservations)
    def cancel_hold(self, reservation):
        if reservation is None:
            return
        held = CreditReservation.objects.get(pk=reservation)
        self._tally(lambda: credit_services.credit_reservation_cancel(reservation=held))

    # --- usage ------------------------------------------------------------------------------

    @rule(amount=st.sampled_from([1, 5, 90, 300]))
    def use_generations(self, amount):
        """The product consumes AI generations against the plan's quota (I6 on the decision)."""
        expected = self._expected("ai_generations", amount)
        regime = self._regime()
        decision = self._tally(
            lambda: entitlements.consume(
                self.org, "ai_generations", amount, idempotency_key=self._key("gen"), now=self.now
            )
        )
        if decision is None:
            return
        if decision.allowed:
            self.model.record(regime, amount)
            self.reported_for = None
        if expected is not None:
            assert decision.allowed == expected, (
                f"I6: consuming {amount} ai_generations: Tally {decision.allowed} ({decision.reason}), "
                f"model {expected}"
            )

    @rule(amount=st.sampled_from([1, 40]))
    def ingest_usage(self, amount):
        event_id = self._key("evt")
        result = self._tally(
            lambda: metering.usage_ingest(
                organization=self.org,
                events=[{"id": event_id, "meter": "ai_generations", "value": amount}],
                now=self.now,
            )
        )
        regime = self._regime()
        if result is not None and result.accepted:
            self.model.record(regime, amount)
            self.reported_for = None

    @rule()
    def report_usage(self):
        """The periodic meter report job."""
        outcome = self._tally(lambda: metering.usage_report_run(now=self.now))
        note(f"  -> {outcome}")
        if outcome is not None and not self.outage:
            self.reported_for = self._billing_basis()

    # --- Stripe's own moves -----------------------------------------------------------------

    @precondition(lambda self: not self.outage)
    @rule(
        status=st.sampled_from([500, 503, 401]),
        paths=st.sampled_from(
            [[], ["/v1/billing/meter_events"], ["/v1/subscription_items"], ["/v1/refunds"]]
        ),
    )
    def stripe_fails(self, status, paths):
        self.sim.store.config.outage = {"status": status, "paths": paths, "remaining": -1}
        self.outage = True
        self.reported_for = None

    @precondition(lambda self: self.outage)
    @rule()
    def stripe_recovers(self):
        self.sim.store.config.outage = None
        self.outage = False
        self.deliveries.retry_failed()

    @precondition(lambda self: not self.outage)
    @rule(deliver=DELIVER)
    def card_starts_failing(self, deliver):
        card = self.stripe.v1.payment_methods.attach(
            "pm_card_chargeCustomerFail", {"customer": self.customer}
        )
        self.stripe.v1.customers.update(
            self.customer, {"invoice_settings": {"default_payment_method": card.id}}
        )
        for sub in self._live():
            self.stripe.v1.subscriptions.update(sub.id, {"default_payment_method": card.id})
        self._stripe_moved(deliver)

    @precondition(lambda self: not self.outage)
    @rule(deliver=DELIVER)
    def card_fixed_and_invoices_paid(self, deliver):
        card = self.stripe.v1.payment_methods.attach("pm_card_visa", {"customer": self.customer})
        self.stripe.v1.customers.update(
            self.customer, {"invoice_settings": {"default_payment_method": card.id}}
        )
        for sub in self._live():
            self.stripe.v1.subscriptions.update(sub.id, {"default_payment_method": card.id})
        for invoice in self.stripe.v1.invoices.list({"customer": self.customer, "status": "open"}).data:
            self.stripe.v1.invoices.pay(invoice.id, {"payment_method": card.id})
        self._stripe_moved(deliver)

    @precondition(lambda self: not self.outage)
    @rule(which=st.integers(0, 10), part=st.booleans(), deliver=DELIVER)
    def refund_from_the_dashboard(self, which, part, deliver):
        # A charged-back payment cannot be refunded (Stripe answers charge_disputed).
        charges = [c for c in self._charges() if c.paid and c.amount_refunded < c.amount and not c.disputed]
        if not charges:
            return
        charge = charges[which % len(charges)]
        params = {"charge": charge.id}
        if part:
            params["amount"] = max(1, (charge.amount - charge.amount_refunded) // 2)
        self.stripe.v1.refunds.create(params)
        self._stripe_moved(deliver)

    @precondition(lambda self: not self.outage)
    @rule(days=st.sampled_from([1, 3, 8, 15, 32]), deliver=DELIVER)
    def time_passes(self, days, deliver):
        """The test clock moves on; meanwhile the periodic jobs ran."""
        self._tally(lambda: metering.usage_report_run(now=self.now))
        target = self.now + timedelta(days=days)
        self.stripe.v1.test_helpers.test_clocks.advance(
            self.clock.id, {"frozen_time": int(target.timestamp())}
        )
        self.now = target
        self._stripe_moved(deliver)
        self._tally(lambda: credit_services.credit_grants_expire(now=self.now))
        self._tally(lambda: credit_services.credit_reservations_expire(now=self.now))

    # --- deliveries -------------------------------------------------------------------------

    @precondition(lambda self: self.deliveries.pending and not self.outage)
    @rule(index=st.integers(0, 30))
    def deliver_one(self, index):
        """Any pending event, not necessarily the oldest: deliveries overtake one another."""
        self.deliveries.deliver(index)

    @precondition(lambda self: self.deliveries.pending and not self.outage)
    @rule(order=st.randoms(use_true_random=False))
    def deliver_all_shuffled(self, order):
        self.deliveries.deliver_all(order)

    @precondition(lambda self: self.deliveries.delivered and not self.outage)
    @rule(index=st.integers(0, 200))
    def deliver_again(self, index):
        self.deliveries.redeliver(index)

    @precondition(lambda self: self.deliveries.delivered and not self.outage)
    @rule(index=st.integers(0, 200))
    def handler_runs_again(self, index):
        self.deliveries.replay(index)

    # --- disputes ---------------------------------------------------------------------------
    # Stripe's dispute card succeeds and is disputed at once; the dispute is then won or lost
    # from the dashboard. `credits.reconcile.credits_due` counts a lost or open dispute's money as
    # not paid, so I3 checks that Tally froze, released or took back the credits it bought.

    @rule(package=st.sampled_from([p[0] for p in PACKAGES]), deliver=DELIVER)
    def buy_credits_then_disputed(self, package, deliver):
        started = self._tally(
            lambda: credit_services.credit_purchase_start(
                organization=self.org, package=CreditPackage.objects.get(code=package), actor=self.owner.user
            )
        )
        if started:
            note(f"  -> hosted checkout answered {pay_checkout(started[1], CARD_DISPUTED)}")
        self._stripe_moved(deliver)

    @rule(plan=st.sampled_from(PLANS))
    def subscribe_then_disputed(self, plan):
        """Checkout on the dispute card: each payment it makes (the first, or the first after a
        trial, and the renewals) is disputed at once."""
        url = self._tally(
            lambda: subscriptions.checkout_start(
                organization=self.org, plan=Plan.objects.get(key=plan), actor=self.owner.user
            )
        )
        if url:
            note(f"  -> hosted checkout answered {pay_checkout(url, CARD_DISPUTED)}")
        self._stripe_moved(True)

    def _open_disputes(self) -> list:
        listed = self.stripe.v1.disputes.list({"limit": 100}).auto_paging_iter()
        return [d for d in listed if d.status in ("needs_response", "under_review", "warning_needs_response")]

    @precondition(lambda self: not self.outage)
    @rule(which=st.integers(0, 5), deliver=DELIVER)
    def dispute_won(self, which, deliver):
        disputes = self._open_disputes()
        if not disputes:
            return
        dispute = disputes[which % len(disputes)]
        self.stripe.v1.disputes.update(
            dispute.id, {"evidence": {"uncategorized_text": "winning_evidence"}, "submit": True}
        )
        self._stripe_moved(deliver)

    @precondition(lambda self: not self.outage)
    @rule(which=st.integers(0, 5), accept=st.booleans(), deliver=DELIVER)
    def dispute_lost(self, which, accept, deliver):
        """Lost on losing evidence, or accepted from the dashboard."""
        disputes = self._open_disputes()
        if not disputes:
            return
        dispute = disputes[which % len(disputes)]
        if accept:
            self.stripe.v1.disputes.close(dispute.id)
        else:
            self.stripe.v1.disputes.update(
                dispute.id, {"evidence": {"uncategorized_text": "losing_evidence"}, "submit": True}
            )
        self._stripe_moved(deliver)

    # --- the model --------------------------------------------------------------------------

    def _settled(self) -> bool:
        return not self.outage and self.deliveries.quiet

    def _stripe_plan(self):
        live = [s for s in self._live() if s.status in ("active", "trialing", "past_due")]
        if len(live) != 1:
            return None, None, None, None
        sub = live[0]
        item = sub["items"].data[0]
        plan = (item.price.metadata or {}).get("tally_plan")
        return plan, sub.id, datetime.fromtimestamp(item.current_period_start, tz=UTC), sub.status

    def _regime(self) -> tuple | None:
        """The usage period now, as the model sees it from Stripe (None: it cannot tell)."""
        if not self._settled():
            return None
        plan, sub_id, period_start, status = self._stripe_plan()
        if plan is None and self._live():
            return None
        if plan is None:
            return ("free", self.now.year, self.now.month)
        if model_interval(plan) != "month":
            return None  # monthly quotas on a yearly plan: not modelled
        # A usage period is its start instant, as Stripe's meter windows are time ranges of the
        # customer: a subscription whose period starts when another's did shares its count.
        return ("period", period_start)

    def _expected(self, feature: str, requested: int) -> bool | None:
        """The model's decision, or None when it does not judge (Tally may not have heard
        everything yet, or a failed payment's grace period decides)."""
        if not self._settled():
            return None
        plan, sub_id, period_start, status = self._stripe_plan()
        if status == "past_due" or (plan is None and self._live()):
            return None
        if plan is not None and self._read_only_for_a_dispute():
            return False
        in_force = self.model.plan_in_force(stripe_plan=plan, subscription=sub_id, period_start=period_start)
        if feature == "ai_generations":
            regime = self._regime()
            used = self.model.used(regime) if regime else None
        else:
            used = Membership.objects.filter(organization=self.org).count()
        if used is None:
            return None
        return self.model.allows(in_force, feature, used, requested)

    def _read_only_for_a_dispute(self) -> bool:
        """The README's rule for a disputed subscription payment, read from Stripe: full access
        for the grace period after the dispute opens, then read-only until it is won or a later
        invoice is paid. Disputes of credit purchases (no invoice) restrict nothing."""
        disputes = list(self.stripe.v1.disputes.list({"limit": 100}).auto_paging_iter())
        if not disputes:
            return False
        invoiced = {}  # payment intent -> the time of the invoice it paid
        paid = self.stripe.v1.invoices.list({"customer": self.customer, "status": "paid", "limit": 100})
        for invoice in paid.auto_paging_iter():
            for payment in self.stripe.v1.invoice_payments.list({"invoice": invoice.id}).data:
                intent = payment.payment.payment_intent
                invoiced[intent if isinstance(intent, str) else intent.id] = invoice.created
        grace = timedelta(days=django_settings.BILLING_GRACE_DAYS)
        due = []
        for dispute in disputes:
            charge = self.stripe.v1.charges.retrieve(dispute.charge)
            if charge.customer != self.customer or charge.payment_intent not in invoiced:
                continue
            if dispute.status == "won":
                continue
            created = invoiced[charge.payment_intent]
            if dispute.status == "lost" and any(later > created for later in invoiced.values()):
                continue
            due.append(datetime.fromtimestamp(dispute.created, tz=UTC) + grace)
        return bool(due) and self.now >= min(due)

    # --- invariants -------------------------------------------------------------------------

    @invariant()
    def i7_no_handler_raises(self):
        _RUN["checks"] += 1
        failures = self.deliveries.failures
        assert not failures, "I7: " + "\n".join(
            f"{f.what} of {f.event_type} {f.event_id} raised {f.error}" for f in failures
        )

    @invariant()
    def i8_usage_days_are_their_events(self):
        breaches = reconcile.usage_days_check(organizations=[self.org])
        assert not breaches, "I8: " + "; ".join(map(str, breaches))

    @invariant()
    def i2_every_account_reconciles(self):
        breaches = credit_reconcile.ledger_check(organizations=[self.org])
        assert not breaches, "I2: " + "; ".join(map(str, breaches))

    @invariant()
    def i1_one_live_subscription(self):
        if self.outage:
            return
        live = self._live()
        assert len(live) <= 1, (
            f"I1: {len(live)} live subscriptions in Stripe: {[(s.id, s.status) for s in live]}"
        )
        if self.deliveries.quiet:
            breaches = reconcile.subscriptions_check(organizations=[self.org])
            assert not breaches, "; ".join(map(str, breaches))

    @invariant()
    def i3_nothing_spendable_unpaid(self):
        if not self._settled():
            return
        # Expiry by Tally's clock: its debits and its expiry job read the wall clock, which the
        # test clock does not move (credit_grant_expire re-checks with timezone.now()).
        breaches = credit_reconcile.spendable_check(organizations=[self.org])
        if breaches:
            ledger = CreditTransaction.objects.filter(account__organization=self.org).order_by("pk")
            lines = [f"{e.type} {e.amount} {e.idempotency_key}" for e in ledger]
            subs = [(s.id, s.status, s.trial_start, s.trial_end) for s in self._all_subscriptions()]
            raise AssertionError("; ".join(map(str, breaches)) + f"\nledger: {lines}\nStripe: {subs}")

    @invariant()
    def i4_meters_match(self):
        if not self._settled() or self.reported_for != self._billing_basis():
            return
        if MeterReport.objects.filter(organization=self.org, status=MeterReport.Status.PENDING).exists():
            return  # retries still on their way
        breaches = reconcile.meters_check(organizations=[self.org])
        assert not breaches, "; ".join(map(str, breaches))

    @invariant()
    def i5_seats_match(self):
        if not self._settled() or not self.seats_synced:
            return
        breaches = reconcile.seats_check(organizations=[self.org])
        assert not breaches, "; ".join(map(str, breaches))

    @invariant()
    def i6_entitlements_match_the_model(self):
        if not self._settled():
            return
        plan, sub_id, period_start, status = self._stripe_plan()
        if status == "past_due" or (plan is None and self._live()):
            return
        in_force = self.model.plan_in_force(stripe_plan=plan, subscription=sub_id, period_start=period_start)
        local = self._local()
        tally_plan = (local.plan.key, local.status) if local else None
        for feature in ("ai_generations", "team_members"):
            decision = entitlements.check(self.org, feature, 0, now=self.now)
            limit, _ = self.model.limit(in_force, feature)
            assert (None if decision.unlimited else decision.limit) == limit, (
                f"I6: {feature} limit: Tally {decision.limit} on {tally_plan}, model {limit} on {in_force}"
            )
        regime = self._regime()
        used = self.model.used(regime) if regime else None
        if used is not None:
            decision = entitlements.check(self.org, "ai_generations", 0, now=self.now)
            assert decision.used == used, f"I6: ai_generations used: Tally {decision.used}, model {used}"


@pytest.fixture
def machine_world(stripe_sim):
    _SIM[:] = [stripe_sim]
    yield
    _SIM.clear()


def test_the_lifecycle_keeps_its_promises(machine_world, machine_settings, machine_seed):
    run = hypothesis.seed(machine_seed)(get_state_machine_test(LifecycleMachine, settings=machine_settings))
    if os.environ.get("MACHINE_REPRODUCE"):
        # "<hypothesis version> <blob>" from a failure's @reproduce_failure line replays that example alone.
        version, blob = os.environ["MACHINE_REPRODUCE"].split()
        run = hypothesis.reproduce_failure(version, blob.encode())(run)
    _RUN.update(examples=0, checks=0)
    try:
        run()
        steps = _RUN["checks"] - _RUN["examples"]
        print(f"\nThe lifecycle machine kept every promise over {_RUN['examples']} examples, {steps} steps.")
    except BaseException:
        print(
            f"\nThe lifecycle machine failed with seed {machine_seed} "
            f"(MACHINE_SEED={machine_seed} reruns it)."
        )
        raise
