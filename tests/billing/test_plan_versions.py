"""Plan versions: a subscriber keeps their price, or moves to the new one at their renewal."""

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from billing.catalog.push import catalog_object_push
from billing.catalog.versions import price_migrations_run
from billing.models import Notice, NoticeKind, OrgSubscription, PlanLineItem, PriceMigration

pytestmark = pytest.mark.django_db(transaction=True)


def new_pro_price(amount: int, on_price_change: str) -> str:
    item = PlanLineItem.objects.get(plan__key="pro_monthly", key="base")
    item.unit_amount, item.on_price_change = amount, on_price_change
    item.save()
    assert catalog_object_push(kind="plan", object_id=item.plan_id).status == "in_sync"
    return PlanLineItem.objects.get(pk=item.pk).stripe_price_id


def price_notices(outbox) -> list:
    """The price-change emails among the others subscribing sends (welcome, receipts)."""
    return [m for m in outbox if "has a new price from your renewal" in m.subject]


def clock_time(world) -> datetime:
    return datetime.fromtimestamp(world.now(), tz=UTC)


def test_it_moves_a_subscriber_at_renewal_after_one_notice(
    stripe_world, subscribed, org, owner, client, mailoutbox
):
    sub = subscribed("pro_monthly", clock=stripe_world.clock, sync=True)
    mailoutbox.clear()  # the welcome and the first receipt
    mailoutbox.clear()  # the welcome and the first receipt; only price notices are counted below
    old = sub.price_ids[0]
    new = new_pro_price(5900, "migrate")
    sub.refresh_from_db()
    end = sub.current_period_end
    assert sub.price_ids == [old]

    client.force_login(owner)
    page = client.get(reverse("billing", args=[org.slug])).content.decode()
    assert "New price from your renewal" in page and "$59 per month" in page and "(now $49)" in page

    stripe_world.advance_to(int((end - timedelta(days=8)).timestamp()))
    price_migrations_run(now=clock_time(stripe_world))
    assert price_notices(mailoutbox) == []  # not yet: the notice goes out seven days before

    stripe_world.advance_to(int((end - timedelta(days=6)).timestamp()))
    price_migrations_run(now=clock_time(stripe_world))
    price_migrations_run(now=clock_time(stripe_world))
    (notice,) = price_notices(mailoutbox)
    assert notice.subject == "Acme: Pro (monthly) has a new price from your renewal"
    assert notice.to == ["alice@example.com"]
    assert "$59 per month" in notice.body and "$49" in notice.body
    assert "Change or cancel your plan: http" in notice.body  # the shared layout, with its link
    assert "$59 per month" in notice.alternatives[0][0]
    remote = stripe_world.client.v1.subscriptions.retrieve(sub.stripe_subscription_id)
    assert [i.price.id for i in remote["items"].data] == [old]  # nothing moves before the renewal

    stripe_world.advance_to(int((end - timedelta(minutes=30)).timestamp()))
    price_migrations_run(now=clock_time(stripe_world))
    price_migrations_run(now=clock_time(stripe_world))
    remote = stripe_world.client.v1.subscriptions.retrieve(sub.stripe_subscription_id)
    assert [i.price.id for i in remote["items"].data] == [new]
    assert PriceMigration.objects.get().migrated_at is not None
    assert len(price_notices(mailoutbox)) == 1
    assert Notice.objects.filter(kind=NoticeKind.PRICE_CHANGE).count() == 1

    stripe_world.advance_past_period_end(org)
    invoices = stripe_world.client.v1.invoices.list({"subscription": sub.stripe_subscription_id}).data
    renewal = next(i for i in invoices if i.billing_reason == "subscription_cycle")
    assert renewal.amount_due == 5900
    assert [line.amount for line in renewal.lines.data] == [5900]  # no proration of the paid period
    assert OrgSubscription.objects.get(pk=sub.pk).price_ids == [new]


def test_a_grandfathered_subscriber_keeps_the_old_price(
    stripe_world, subscribed, org, owner, mailoutbox, client
):
    sub = subscribed("pro_monthly", clock=stripe_world.clock, sync=True)
    old = sub.price_ids[0]
    new_pro_price(5900, "keep")
    client.force_login(owner)
    assert (
        "New price from your renewal" not in client.get(reverse("billing", args=[org.slug])).content.decode()
    )
    stripe_world.advance_to(int((sub.current_period_end - timedelta(minutes=30)).timestamp()))
    price_migrations_run(now=clock_time(stripe_world))
    stripe_world.advance_past_period_end(org)
    invoices = stripe_world.client.v1.invoices.list({"subscription": sub.stripe_subscription_id}).data
    renewal = next(i for i in invoices if i.billing_reason == "subscription_cycle")
    assert renewal.amount_due == 4900
    assert price_notices(mailoutbox) == [] and OrgSubscription.objects.get(pk=sub.pk).price_ids == [old]
