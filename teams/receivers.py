"""Saved or deleted keys and organizations (admin edits included) make cached keys stale."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from teams import keycache
from teams.models import ApiKey, Organization


@receiver([post_save, post_delete], sender=ApiKey)
@receiver([post_save, post_delete], sender=Organization)
def keys_changed(sender, **kwargs) -> None:
    keycache.invalidate()
