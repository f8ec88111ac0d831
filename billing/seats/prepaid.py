"""Prepaid seats: on a plan with `seat_mode = "prepaid"`, the owner sets the seat quantity (never
fewer than the members), seeing Stripe's prorated amount first; invitations stop there."""

import uuid
from dataclasses import dataclass

from billing.gateway.client import stripe_client
from billing.models import OrgSubscription
from billing.seats.counts import seat_holders
from billing.seats.preview import _invoice_after
from billing.seats.sync import _item_quantity_set, _proration_behavior, _seat_item
from billing.subscriptions.changes import Preview
from billing.subscriptions.sync import subscription_sync
from common.errors import ServiceError
from teams.models import Organization, User
from teams.services import audit_record

MAX_SEATS = 1000


@dataclass(frozen=True)
class PrepaidSeatsPreview:
    current: int
    seats: int
    members: int
    prorated: int | None  # Stripe's proration for the rest of the period
    upcoming: Preview | None  # the invoice after the change


def _prepaid_subscription(organization: Organization) -> OrgSubscription:
    subscription = OrgSubscription.objects.select_related("plan").filter(organization=organization).first()
    if not (subscription and subscription.applies and subscription.stripe_subscription_id):
        raise ServiceError("no_subscription", "There is no active subscription to change.", status=409)
    if not subscription.plan.seats_prepaid:
        raise ServiceError(
            "seats_not_prepaid", f"{subscription.plan.name} bills one seat per member.", field="seats"
        )
    return subscription


def seats_requested(raw) -> int:
    """A seat count typed by a person."""
    text = str(raw if raw is not None else "").strip()
    if not text.isdigit() or len(text) > 6:
        raise ServiceError("invalid_seats", "The number of seats is a whole number.", field="seats")
    return int(text)


def _validated(organization: Organization, subscription: OrgSubscription, raw) -> int:
    seats = seats_requested(raw)
    members = seat_holders(organization)
    if seats < members:
        raise ServiceError(
            "seats_below_members",
            f"{organization.name} has {members} members: choose at least {members} seats, "
            "or remove members first.",
            field="seats",
        )
    least = subscription.plan.seat_minimum
    if seats < least:
        raise ServiceError(
            "seats_below_minimum", f"{subscription.plan.name} bills at least {least} seats.", field="seats"
        )
    if seats > MAX_SEATS:
        raise ServiceError("seats_above_maximum", f"At most {MAX_SEATS} seats online.", field="seats")
    return seats


def seats_prepaid_preview(*, organization: Organization, seats) -> PrepaidSeatsPreview:
    """What setting the prepaid seats to `seats` costs, as Stripe prorates it."""
    subscription = _prepaid_subscription(organization)
    seats = _validated(organization, subscription, seats)
    prorated, upcoming = None, None
    if seats != subscription.seats:
        prorated, upcoming = _invoice_after(subscription, subscription.plan.seat_item(), seats)
    return PrepaidSeatsPreview(
        current=subscription.seats,
        seats=seats,
        members=seat_holders(organization),
        prorated=prorated,
        upcoming=upcoming,
    )


def seats_prepaid_set(
    *, organization: Organization, seats, actor: User, attempt: str = ""
) -> OrgSubscription:
    """Set the subscription's seat quantity to `seats`, billed by the plan's seat policy.

    `attempt` names one confirmation (the form's code): sent again, it reuses the Stripe key, so
    a change that reached Stripe before the answer was lost is not applied twice."""
    subscription = _prepaid_subscription(organization)
    seats = _validated(organization, subscription, seats)
    client = stripe_client()
    remote = client.v1.subscriptions.retrieve(subscription.stripe_subscription_id)
    line = subscription.plan.seat_item()
    item = _seat_item(remote, line)
    if item is None:
        raise ServiceError("no_seat_item", "The subscription has no seats to change.", status=409)
    current = item.quantity or 0
    if current != seats:
        behavior = _proration_behavior(subscription.plan.seat_policy, increase=seats > current)
        _item_quantity_set(
            client,
            item.id,
            {"quantity": seats, "proration_behavior": behavior},
            idempotency_key=f"tally-prepaid-seats-{item.id}-{current}-{seats}-{attempt or uuid.uuid4().hex}",
        )
        audit_record(
            organization=organization,
            action="billing.seats_prepaid",
            actor=actor,
            target=subscription.plan.key,
            data={"from": current, "to": seats, "proration_behavior": behavior},
        )
    return subscription_sync(subscription_id=remote.id) or subscription
