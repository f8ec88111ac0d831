"""The email telling a subscriber that their price changes at their next renewal."""

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse

from billing.models import PriceMigration, PriceVersion


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_price_change_notice(migration_id: int) -> None:
    migration = (
        PriceMigration.objects.select_related("subscription__organization", "subscription__plan")
        .filter(pk=migration_id)
        .first()
    )
    if migration is None:
        return
    organization = migration.subscription.organization
    versions = {
        v.stripe_price_id: v
        for v in PriceVersion.objects.filter(
            stripe_price_id__in=[migration.from_price_id, migration.to_price_id]
        )
    }
    context = {
        "organization": organization,
        "plan": migration.subscription.plan,
        "old": versions.get(migration.from_price_id),
        "new": versions.get(migration.to_price_id),
        "currency": migration.subscription.plan.currency,
        "renews_at": migration.renews_at,
        "billing_url": settings.SITE_URL + reverse("billing", args=[organization.slug]),
    }
    send_mail(
        subject=f"{organization.name}: {migration.subscription.plan.name} has a new price from your renewal",
        message=render_to_string("billing/email/price_change.txt", context),
        from_email=None,
        recipient_list=organization.billing_contacts(),
    )
