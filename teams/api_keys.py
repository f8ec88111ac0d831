"""API keys: created with their scopes, shown once, stored as a hash, revoked at once."""

from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from common.errors import ServiceError
from teams import keycache
from teams.models import (
    ALL_SCOPES,
    ApiKey,
    Organization,
    User,
)
from teams.services import audit_record


def api_key_create(
    *,
    organization: Organization,
    actor: User,
    name: str,
    scopes: Iterable[str] = ALL_SCOPES,
    ip_address: str | None = None,
) -> tuple[ApiKey, str]:
    """Returns the key and its secret; the secret is never retrievable again."""
    name = name.strip()
    if not name:
        raise ServiceError("name_required", "Name the key after what will use it.", field="name")
    chosen = set(scopes)
    if chosen - set(ALL_SCOPES):
        unknown = ", ".join(sorted(chosen - set(ALL_SCOPES)))
        raise ServiceError("unknown_scope", f"Unknown scope: {unknown}.", field="scopes")
    scopes = [s for s in ALL_SCOPES if s in chosen]
    if not scopes:
        raise ServiceError("scopes_required", "Choose at least one scope for the key.", field="scopes")
    secret = ApiKey.generate_secret()
    with transaction.atomic():
        key = ApiKey.objects.create(
            organization=organization,
            name=name,
            prefix=secret[: len(ApiKey.PREFIX) + 6],
            digest=ApiKey.digest_of(secret),
            scopes=scopes,
            created_by=actor,
        )
        audit_record(
            organization=organization,
            action="api_key.created",
            actor=actor,
            target=f"{key.name} ({key.prefix}…): {', '.join(scopes)}",
            ip_address=ip_address,
        )
    return key, secret


def api_key_revoke(*, key: ApiKey, actor: User, ip_address: str | None = None) -> None:
    with transaction.atomic():
        updated = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        if not updated:
            raise ServiceError("already_revoked", "This key was already revoked.")
        keycache.invalidate()
        audit_record(
            organization=key.organization,
            action="api_key.revoked",
            actor=actor,
            target=f"{key.name} ({key.prefix}…)",
            ip_address=ip_address,
        )


def api_key_authenticate(secret: str, *, prefetch=None) -> ApiKey | None:
    """The active key with this secret, its organization attached, from the key cache
    (`teams/keycache.py`): no query when cached, `last_used_at` noted in bulk. `prefetch`: see
    `keycache.authenticate`."""
    if not secret.startswith(ApiKey.PREFIX):
        return None
    return keycache.authenticate(secret, prefetch=prefetch)


def api_key_use_flush() -> int:
    """Write the keys' noted last uses; the periodic task calls it every minute."""
    return keycache.use_flush()
