"""What one more seat costs, from the plan's tiers, and the next invoice after the change."""

from dataclasses import dataclass, replace

from billing import pricing
from billing.gateway.client import stripe_client
from billing.models import OrgSubscription, Plan, PlanLineItem, SeatPolicy
from billing.seats.counts import billable_seats, seat_holders
from billing.seats.sync import _proration_behavior, _seat_item
from billing.subscriptions.changes import Preview, preview_lines
from teams.models import Organization


@dataclass(frozen=True)
class SeatPreview:
    plan: Plan
    seats: int  # billed now
    next_seat: int  # the number of the seat one more member takes
    marginal: int  # what it adds per billing interval
    tier_amount: int  # the per-seat price of the tier it falls in
    currency: str
    interval: str
    policy: str
    prorated: int | None = None  # charged (or credited) for the rest of this period
    upcoming: Preview | None = None  # the next invoice, with the change

    @property
    def invoiced_now(self) -> bool:
        return self.policy == SeatPolicy.INVOICE


def _tier_amount(line: PlanLineItem, seat: int) -> int:
    """The per-seat price of the tier seat number `seat` falls in (with volume tiers, the price
    every seat pays at that count)."""
    tiers = [pricing.Tier.from_dict(t) for t in line.tiers or []]
    if not tiers:
        return line.unit_amount or 0
    return next(t for t in tiers if t.up_to is None or seat <= t.up_to).unit_amount


def seat_preview(*, organization: Organization, with_invoice: bool = False) -> SeatPreview | None:
    """What adding one member costs on the organization's per-seat plan, from the plan's tiers
    (no network); with `with_invoice`, also the prorated amount and the next invoice as Stripe
    computes them for that change. None without a per-seat subscription."""
    subscription = (
        OrgSubscription.objects.select_related("plan", "pending_plan")
        .filter(organization=organization)
        .first()
    )
    if subscription is None or not subscription.applies:
        return None
    # A downgrade waiting for the period end is already what Stripe bills seats by.
    plan = subscription.pending_plan or subscription.plan
    line = plan.seat_item()
    if line is None:
        return None
    seats = billable_seats(organization, plan=plan)
    next_seat = seat_holders(organization) + 1
    # Inside the plan's minimum a new member fills a seat already paid for.
    marginal = 0
    if next_seat > seats:
        marginal = pricing.marginal(
            quantity=seats, unit_amount=line.unit_amount, tiers=line.tiers, tiers_mode=line.tiers_mode or None
        )
    preview = SeatPreview(
        plan=plan,
        seats=seats,
        next_seat=next_seat,
        marginal=marginal,
        tier_amount=_tier_amount(line, next_seat),
        currency=plan.currency,
        interval=plan.interval,
        policy=plan.seat_policy,
    )
    if not with_invoice or not subscription.stripe_subscription_id or next_seat <= seats:
        return preview
    prorated, upcoming = _invoice_after(subscription, line, next_seat)
    return replace(preview, prorated=prorated, upcoming=upcoming)


def _is_proration(line) -> bool:
    parent = line.get("parent") or {}
    details = parent.get("subscription_item_details") or parent.get("invoice_item_details") or {}
    return bool(details.get("proration"))


def _invoice_after(subscription: OrgSubscription, line: PlanLineItem, quantity: int):
    """Stripe's own numbers for setting the seat quantity to `quantity`: the prorated amount,
    and the invoice that follows (at once under "invoice now", else the next renewal)."""
    client = stripe_client()
    remote = client.v1.subscriptions.retrieve(subscription.stripe_subscription_id)
    item = _seat_item(remote, line)
    if item is None:
        return None, None
    current = item.quantity or 0
    behavior = _proration_behavior(line.plan.seat_policy, increase=quantity > current)
    invoice = client.v1.invoices.create_preview(
        {
            "customer": remote.customer,
            "subscription": remote.id,
            "subscription_details": {
                "items": [{"id": item.id, "quantity": quantity}],
                "proration_behavior": behavior,
            },
        }
    )
    lines = invoice.lines.data
    prorated = sum(li.amount for li in lines if _is_proration(li))
    upcoming = Preview(
        amount_due=invoice.amount_due,
        currency=invoice.currency,
        lines=preview_lines(lines),
        next_payment_at=None if behavior == "always_invoice" else subscription.current_period_end,
        immediate=behavior == "always_invoice",
    )
    return prorated, upcoming
