"""Celery: a catalog object pushed to Stripe after the admin saved it."""

from celery import shared_task

# `notices` registers the old task name, for messages queued under it.
from billing.catalog import notices, versions  # noqa: F401
from billing.catalog.push import catalog_object_push


@shared_task
def catalog_object_push_task(kind: str, object_id: int) -> str:
    """Thin: the push records its own outcome (in sync, or failed with Stripe's error) on the
    object's state, and staff retry a failure with the admin's "Push to Stripe"."""
    return catalog_object_push(kind=kind, object_id=object_id).status


@shared_task
def price_migrations_run() -> int:
    """Every 15 minutes: price-change notices that are due, and moves just before a renewal."""
    return len(versions.price_migrations_run())
