import hashlib
import secrets
import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.core import signing
from django.db import models
from django.urls import reverse
from django.utils import timezone


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create(self, email: str, password: str | None, **fields):
        if not email:
            raise ValueError("Users need an email address.")
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **fields):
        fields.setdefault("is_staff", False)
        fields.setdefault("is_superuser", False)
        return self._create(email, password, **fields)

    def create_superuser(self, email: str, password: str | None = None, **fields):
        fields.update(is_staff=True, is_superuser=True)
        return self._create(email, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    """A person. Signs in with an email address; belongs to organizations through memberships."""

    email = models.EmailField(unique=True)
    name = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    def get_full_name(self) -> str:
        return self.name or self.email

    def get_short_name(self) -> str:
        return self.name.split(" ")[0] if self.name else self.email.split("@")[0]


class OrganizationQuerySet(models.QuerySet):
    def alive(self):
        return self.filter(deleted_at__isnull=True)


class Organization(models.Model):
    """The billing entity: subscriptions, credits and usage belong to an organization.

    Deleting one is a soft delete: payments, ledgers and the audit log point at this row and are
    kept, while memberships, invitations and keys go, so nobody reaches it again.
    """

    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=60, unique=True)
    billing_email = models.EmailField(blank=True)
    is_personal = models.BooleanField(default=False)
    # Owners, admins and billing managers must sign in with a second factor to open its pages.
    # A database default too: rows written by code that predates the column get False.
    require_two_factor = models.BooleanField(default=False, db_default=False)
    created_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("dashboard", args=[self.slug])

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def email(self) -> str:
        """The address Stripe bills (dj-stripe reads `email` from its subscriber model)."""
        if self.billing_email:
            return self.billing_email
        owner = self.memberships.filter(role=Role.OWNER).select_related("user").first()
        return owner.user.email if owner else ""

    @staticmethod
    def two_factor_roles() -> tuple[str, ...]:
        """The roles an organization's two-factor requirement applies to."""
        return (Role.OWNER, Role.ADMIN, Role.BILLING)

    def billing_contacts(self) -> list[str]:
        """Who gets billing mail (payments, refunds, disputes, usage and credit alerts): the
        members who may manage billing, and the billing address when one is set."""
        emails = set(
            self.memberships.filter(role__in=[Role.OWNER, Role.ADMIN, Role.BILLING]).values_list(
                "user__email", flat=True
            )
        )
        if self.billing_email:
            emails.add(self.billing_email)
        return sorted(emails)


class Role(models.TextChoices):
    # Ordered from least to most privileged; `Role.rank` relies on this order.
    MEMBER = "member", "Member"
    BILLING = "billing", "Billing"
    ADMIN = "admin", "Admin"
    OWNER = "owner", "Owner"

    @classmethod
    def rank(cls, role: str) -> int:
        return cls.values.index(role)


class MembershipQuerySet(models.QuerySet):
    def owners(self):
        return self.filter(role=Role.OWNER)


class Membership(models.Model):
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    objects = MembershipQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "user"], name="teams_membership_unique_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"

    def has_role(self, min_role: str) -> bool:
        return Role.rank(self.role) >= Role.rank(min_role)

    @property
    def is_owner(self) -> bool:
        return self.role == Role.OWNER

    @property
    def can_manage_members(self) -> bool:
        return self.has_role(Role.ADMIN)

    @property
    def can_manage_billing(self) -> bool:
        return self.has_role(Role.BILLING)


class InvitationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    ACCEPTED = "accepted", "Accepted"
    REVOKED = "revoked", "Revoked"


class InvitationQuerySet(models.QuerySet):
    def pending(self):
        return self.filter(status=InvitationStatus.PENDING)


class Invitation(models.Model):
    """An email address invited into an organization with a role.

    The link carries a signed token naming the invitation and its current nonce; resending
    rotates the nonce, so only the newest link works.
    """

    TOKEN_SALT = "teams.invitation"  # noqa: S105 (a signing namespace, not a secret)

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    nonce = models.CharField(max_length=32, default="")
    status = models.CharField(
        max_length=16, choices=InvitationStatus.choices, default=InvitationStatus.PENDING
    )
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    accepted_at = models.DateTimeField(null=True, blank=True)

    objects = InvitationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One open invitation per address and organization; accepted/revoked ones stay as history.
            models.UniqueConstraint(
                fields=["organization", "email"],
                condition=models.Q(status="pending"),
                name="teams_invitation_one_pending_per_email",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} to {self.organization} ({self.status})"

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_hex(16)

    @staticmethod
    def default_expiry():
        return timezone.now() + timedelta(days=settings.INVITATION_TTL_DAYS)

    @property
    def is_expired(self) -> bool:
        return timezone.now() >= self.expires_at

    @property
    def is_open(self) -> bool:
        return self.status == InvitationStatus.PENDING and not self.is_expired

    @property
    def token(self) -> str:
        # No signing time in it: expiry lives in expires_at, and a link that changed every
        # second would differ between the email, the resend and what support sees.
        return signing.Signer(salt=self.TOKEN_SALT).sign_object({"c": str(self.code), "n": self.nonce})

    def get_accept_url(self) -> str:
        return reverse("invitation_accept", args=[self.token])

    @classmethod
    def from_token(cls, token: str) -> "Invitation | None":
        """The invitation a link names, or None for a forged, mangled or superseded link."""
        try:
            data = cls._token_data(token)
            code = uuid.UUID(data["c"])
        except (signing.BadSignature, KeyError, TypeError, ValueError):
            return None
        invitation = cls.objects.select_related("organization", "invited_by").filter(code=code).first()
        if invitation is None or not secrets.compare_digest(invitation.nonce, data.get("n", "")):
            return None
        return invitation

    @classmethod
    def _token_data(cls, token: str) -> dict:
        if token.count(":") == 2:
            # Links mailed before tokens became stable carry a signing time; they stay valid.
            return signing.loads(token, salt=cls.TOKEN_SALT)
        return signing.Signer(salt=cls.TOKEN_SALT).unsign_object(token)


class Scope(models.TextChoices):
    """What an API key may do. People are governed by their roles instead."""

    READ = "read", "Read everything"
    CREDITS_WRITE = "credits:write", "Consume and reserve credits"
    USAGE_WRITE = "usage:write", "Record usage events"
    PROJECTS_WRITE = "projects:write", "Create, change and delete projects and generations"
    BILLING_MANAGE = "billing:manage", "Start checkouts, open the billing portal, buy credits"


ALL_SCOPES = tuple(Scope.values)


def _all_scopes() -> list[str]:
    return list(ALL_SCOPES)


class ApiKeyQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True)


class ApiKey(models.Model):
    """A secret for server-to-server calls on behalf of an organization.

    Only a SHA-256 digest is stored: the key is shown once, at creation. Keys are long random
    strings, so a fast digest is enough (no password stretching needed).
    """

    PREFIX = "tly_"
    # How often the last-used time is written; a busy key would otherwise write on every call.
    LAST_USED_GRANULARITY = timedelta(minutes=1)

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text="The first characters, to recognise it.")
    digest = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Chosen at creation; keys made before scopes existed keep full access.
    scopes = models.JSONField(default=_all_scopes)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def generate_secret(cls) -> str:
        return cls.PREFIX + secrets.token_urlsafe(32)

    @staticmethod
    def digest_of(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def has_scopes(self, needed) -> bool:
        return set(needed) <= set(self.scopes)

    @property
    def scope_labels(self) -> list[str]:
        return [s for s in ALL_SCOPES if s in self.scopes]


class AuditEvent(models.Model):
    """Who did what to an organization. Written by services, never edited."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="audit_events")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    actor_api_key = models.ForeignKey(
        ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    action = models.CharField(max_length=64, db_index=True)
    target = models.CharField(max_length=255, blank=True)
    data = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.action} {self.target}"


class QueuedTask(models.Model):
    """A Celery task written in the transaction of the action that queued it (an outbox): a
    broker away when the action commits loses nothing. The row is deleted once the broker has the
    message; `teams.outbox.outbox_relay` publishes what is left when the broker is back."""

    task = models.CharField(max_length=200)
    task_id = models.UUIDField(default=uuid.uuid4, unique=True)  # kept across publishes
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    not_before = models.DateTimeField(null=True, blank=True)  # a countdown, as a time
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.task} {self.task_id}"


# Kept in their own module; imported here so that Django registers them with the app.
from teams.models_twofactor import RecoveryCode, TwoFactor  # noqa: E402, F401
