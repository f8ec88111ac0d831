"""A person's two-factor sign-in: one TOTP secret (sealed, teams/totp.py) and its recovery codes."""

import hashlib

from django.conf import settings
from django.db import models
from django.utils import timezone

from teams import totp


class TwoFactor(models.Model):
    """Exists from the moment someone starts enrolling; on once `confirmed_at` is set (a code
    from their app was checked). `last_step` is the time step of the last accepted code, so a
    code cannot be used twice."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="two_factor")
    secret_sealed = models.TextField()
    confirmed_at = models.DateTimeField(null=True, blank=True)
    last_step = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"two-factor of {self.user}"

    @property
    def is_on(self) -> bool:
        return self.confirmed_at is not None

    @property
    def secret(self) -> bytes:
        return totp.unseal(self.secret_sealed)


class RecoveryCode(models.Model):
    """One single-use code for when the phone is lost; only its SHA-256 is kept (the code has
    50 random bits, so a slow hash would add nothing)."""

    two_factor = models.ForeignKey(TwoFactor, on_delete=models.CASCADE, related_name="recovery_codes")
    digest = models.CharField(max_length=64)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["two_factor", "digest"], name="teams_recoverycode_unique_digest"),
        ]

    def __str__(self) -> str:
        return f"recovery code of {self.two_factor.user_id}" + (" (used)" if self.used_at else "")

    @staticmethod
    def normalize(code: str) -> str:
        return "".join(ch for ch in code.lower() if ch.isalnum())

    @classmethod
    def digest_of(cls, code: str) -> str:
        return hashlib.sha256(cls.normalize(code).encode()).hexdigest()
