"""Two-factor sign-in: enrolment, the check of a code or recovery code, and turning it off.

A code is accepted only for a time step later than the last one accepted, and a recovery code
only while unused; both are one conditional UPDATE, so two requests racing with the same code
cannot both pass.
"""

import secrets

from django.db import transaction
from django.utils import timezone

from common.errors import ServiceError
from teams import totp
from teams.models import Membership, Organization, RecoveryCode, TwoFactor, User
from teams.services import audit_record

RECOVERY_CODES = 10
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread


def two_factor_on(user) -> bool:
    return TwoFactor.objects.filter(user=user, confirmed_at__isnull=False).exists()


def two_factor_missing_for(*, membership: Membership) -> bool:
    """Whether the organization requires a second factor of this member who has none."""
    organization = membership.organization
    return (
        organization.require_two_factor
        and membership.role in Organization.two_factor_roles()
        and not two_factor_on(membership.user_id)
    )


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


def two_factor_start(*, user: User) -> TwoFactor:
    """A new secret waiting for its first code; an earlier unconfirmed one is replaced."""
    if two_factor_on(user):
        raise ServiceError("two_factor_on", "Two-factor sign-in is already on; turn it off first.")
    with transaction.atomic():
        TwoFactor.objects.filter(user=user, confirmed_at__isnull=True).delete()
        return TwoFactor.objects.create(user=user, secret_sealed=totp.seal(totp.new_secret()))


def two_factor_confirm(*, user: User, code: str, when: float | None = None) -> list[str]:
    """Turn two-factor on with a first code from the app; the recovery codes, shown only now."""
    pending = TwoFactor.objects.filter(user=user, confirmed_at__isnull=True).first()
    if pending is None:
        raise ServiceError("not_enrolling", "Start the set-up again: there is no secret waiting.")
    step = totp.matching_step(pending.secret, code, when=when)
    if step is None:
        raise ServiceError("wrong_code", "That code is not the one your app shows now.", field="code")
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODES)]
    with transaction.atomic():
        won = TwoFactor.objects.filter(pk=pending.pk, confirmed_at__isnull=True).update(
            confirmed_at=timezone.now(), last_step=step
        )
        if not won:
            raise ServiceError("not_enrolling", "Two-factor sign-in was already turned on.")
        RecoveryCode.objects.bulk_create(
            RecoveryCode(two_factor=pending, digest=RecoveryCode.digest_of(c)) for c in codes
        )
    return codes


def two_factor_verify(*, user: User, code: str, when: float | None = None) -> str:
    """Check a code from the app or a recovery code: "totp" or "recovery" when it passes, ""
    otherwise. Each is good once: a code's time step and a recovery code are used up."""
    device = TwoFactor.objects.filter(user=user, confirmed_at__isnull=False).first()
    if device is None or not code.strip():
        return ""
    try:
        step = totp.matching_step(device.secret, code, when=when)
    except ValueError:
        # Sealed with another TOTP_ENCRYPTION_KEY: the recovery codes are the way in.
        step = None
    if step is not None:
        won = TwoFactor.objects.filter(pk=device.pk, last_step__lt=step).update(last_step=step)
        return "totp" if won else ""
    used = RecoveryCode.objects.filter(
        two_factor=device, digest=RecoveryCode.digest_of(code), used_at__isnull=True
    ).update(used_at=timezone.now())
    return "recovery" if used else ""


def recovery_codes_left(user) -> int:
    return RecoveryCode.objects.filter(two_factor__user=user, used_at__isnull=True).count()


def two_factor_disable(*, user: User, code: str = "", password: str = "") -> None:
    """Turn it off, proven by a current code (or recovery code) or the account's password."""
    if not two_factor_on(user):
        raise ServiceError("two_factor_off", "Two-factor sign-in is not on.")
    proven = (password and user.check_password(password)) or (
        code and two_factor_verify(user=user, code=code)
    )
    if not proven:
        raise ServiceError(
            "not_proven", "Give a current code from your app or your password to turn it off.", field="code"
        )
    TwoFactor.objects.filter(user=user).delete()


def organization_two_factor_set(
    *, organization: Organization, actor: User, require: bool, ip_address: str | None = None
) -> None:
    """Turn the requirement on or off. Whoever turns it on must have a second factor already,
    or the change would shut them out of the page they are on."""
    if require and not two_factor_on(actor):
        raise ServiceError(
            "two_factor_needed_first",
            "Turn on two-factor sign-in for your own account before requiring it of others.",
            field="require_two_factor",
        )
    changed = Organization.objects.filter(pk=organization.pk, require_two_factor=not require).update(
        require_two_factor=require
    )
    organization.require_two_factor = require
    if changed:
        audit_record(
            organization=organization,
            action="organization.two_factor_required" if require else "organization.two_factor_optional",
            actor=actor,
            target=organization.slug,
            ip_address=ip_address,
        )
