"""Plan versions: when a line item's price changes, its subscribers keep their price unless staff
chose that they move to the new one at their next renewal (`PlanLineItem.on_price_change`,
recorded on the new `PriceVersion`).

A move is announced `BILLING_PRICE_CHANGE_NOTICE_DAYS` before the renewal, once, and made just
before it (`MOVE_LEAD`): the item is put on the new price without proration, so the period
already paid is untouched and the renewal invoice bills the new amount, as Stripe does for a
price change with `proration_behavior=none`.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.gateway.client import stripe_client
from billing.gateway.prices import subscription_price_move
from billing.models import PLAN_STATUSES, OrgSubscription, PriceChange, PriceMigration, PriceVersion
from billing.notifications import price_change_queue

# How long before the renewal the item moves: the periodic job runs every 15 minutes.
MOVE_LEAD = timedelta(hours=1)


@dataclass(frozen=True)
class PriceMove:
    subscription: OrgSubscription
    old: PriceVersion
    new: PriceVersion

    @property
    def renews_at(self) -> datetime:
        return self.subscription.current_period_end


def price_moves_of(subscription: OrgSubscription | None) -> list[PriceMove]:
    """The prices of `subscription` that move to their line item's new price at its renewal."""
    if subscription is None or not subscription.price_ids or subscription.current_period_end is None:
        return []
    if subscription.status not in PLAN_STATUSES or subscription.cancel_at_period_end:
        return []
    moves = []
    olds = PriceVersion.objects.filter(stripe_price_id__in=subscription.price_ids).select_related("line_item")
    for old in olds:
        selling = old.line_item.stripe_price_id
        if not selling or selling == old.stripe_price_id:
            continue
        new = PriceVersion.objects.filter(stripe_price_id=selling).first()
        if new is not None and new.on_change == PriceChange.MIGRATE:
            moves.append(PriceMove(subscription=subscription, old=old, new=new))
    return moves


def price_migrations_run(*, now: datetime | None = None) -> list[PriceMigration]:
    """Send the notices that are due and make the moves that are due; safe to run twice or on
    two nodes at once (a notice and a move are each claimed by a conditional update)."""
    now = now or timezone.now()
    notice = timedelta(days=settings.BILLING_PRICE_CHANGE_NOTICE_DAYS)
    done = []
    live = (
        OrgSubscription.objects.filter(status__in=PLAN_STATUSES, cancel_at_period_end=False)
        .exclude(stripe_subscription_id=None)
        .exclude(current_period_end=None)
        .filter(current_period_end__lte=now + notice)
    )
    for subscription in live:
        for move in price_moves_of(subscription):
            migration, _ = PriceMigration.objects.get_or_create(
                organization_id=subscription.organization_id,
                subscription=subscription,
                from_price_id=move.old.stripe_price_id,
                to_price_id=move.new.stripe_price_id,
                defaults={"renews_at": move.renews_at},
            )
            with transaction.atomic():
                # The claim and the notice commit together; the notice's key (subscription and
                # new price) is what makes it one email across reruns and nodes.
                claimed = PriceMigration.objects.filter(pk=migration.pk, notice_sent_at=None).update(
                    notice_sent_at=now
                )
                if claimed:
                    price_change_queue(migration=migration)
            if migration.migrated_at is None and now >= move.renews_at - MOVE_LEAD:
                subscription_price_move(
                    stripe_client(),
                    subscription.stripe_subscription_id,
                    move.old.stripe_price_id,
                    move.new.stripe_price_id,
                )
                PriceMigration.objects.filter(pk=migration.pk, migrated_at=None).update(migrated_at=now)
            done.append(migration)
    return done
