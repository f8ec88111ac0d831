"""The email telling a subscriber that their price changes at their next renewal is a billing
notice (`billing.notifications.price_change_queue`). This task name still runs, so messages
queued under it before are sent, once, under the same key."""

from celery import shared_task

from billing.models import PriceMigration
from billing.notifications import notice_send_now


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_price_change_notice(migration_id: int) -> None:
    migration = (
        PriceMigration.objects.select_related("subscription__organization").filter(pk=migration_id).first()
    )
    if migration is None:
        return
    subscription = migration.subscription
    notice_send_now(
        organization=subscription.organization,
        kind="price_change",
        key=f"{subscription.stripe_subscription_id or subscription.pk}:{migration.to_price_id}",
        data={"migration": migration.pk},
    )
