from collections.abc import Callable

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from common.errors import ServiceError
from teams import keycache
from teams.models import (
    ApiKey,
    AuditEvent,
    Invitation,
    InvitationStatus,
    Membership,
    Organization,
    Role,
    User,
)
from teams.tasks import send_invitation_email

MembershipGuard = Callable[..., None]


OrganizationHook = Callable[..., None]


_membership_guards: list[MembershipGuard] = []


_deletion_hooks: list[OrganizationHook] = []


_update_hooks: list[OrganizationHook] = []


def membership_guard_register(guard: MembershipGuard) -> None:
    """Let another app refuse new members (billing: the seat limit).

    A guard is called as `guard(organization=..., adding=1, pending=n)` inside the transaction
    that holds the organization's row lock, with `pending` the open invitations not counted yet;
    it raises a ServiceError to refuse. It must not call anything external.
    """
    if guard not in _membership_guards:
        _membership_guards.append(guard)


def organization_deleted_register(hook: OrganizationHook) -> None:
    """Run `hook(organization=...)` inside the transaction that deletes an organization (billing
    queues the cancellation of its subscription for after the commit)."""
    if hook not in _deletion_hooks:
        _deletion_hooks.append(hook)


def organization_updated_register(hook: OrganizationHook) -> None:
    """Run `hook(organization=..., changed={field: [old, new]})` inside the transaction that
    saves a change of the organization's name or billing email (billing queues the push to the
    Stripe customer for after the commit)."""
    if hook not in _update_hooks:
        _update_hooks.append(hook)


def _lock_organization(organization: Organization) -> Organization:
    """Serialize membership changes of one organization: whoever holds this lock counts members
    and pending invitations knowing nobody else is adding one."""
    return Organization.objects.select_for_update().get(pk=organization.pk)


def _guard_membership(organization: Organization, *, adding: int, pending: int) -> None:
    for guard in _membership_guards:
        guard(organization=organization, adding=adding, pending=pending)


def audit_record(
    *,
    organization: Organization,
    action: str,
    actor: User | None = None,
    api_key: ApiKey | None = None,
    target: str = "",
    data: dict | None = None,
    ip_address: str | None = None,
) -> AuditEvent:
    return AuditEvent.objects.create(
        organization=organization,
        action=action,
        actor=actor,
        actor_api_key=api_key,
        target=target[:255],
        data=data or {},
        ip_address=ip_address,
    )


def _unique_slug(name: str) -> str:
    base = slugify(name)[:50].strip("-") or "org"
    slug, n = base, 1
    while Organization.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def organization_create(
    *, owner: User, name: str, is_personal: bool = False, ip_address: str | None = None
) -> Organization:
    name = name.strip()
    if not name:
        raise ServiceError("name_required", "Give the organization a name.", field="name")
    for _ in range(5):
        try:
            with transaction.atomic():
                org = Organization.objects.create(name=name, slug=_unique_slug(name), is_personal=is_personal)
                Membership.objects.create(organization=org, user=owner, role=Role.OWNER)
                audit_record(
                    organization=org,
                    action="organization.created",
                    actor=owner,
                    target=org.slug,
                    ip_address=ip_address,
                )
                return org
        except IntegrityError:
            # Another request took the same slug between our check and insert; pick again.
            continue
    raise ServiceError("slug_unavailable", "Could not find a free address for that name.")


def organization_update(
    *,
    organization: Organization,
    actor: User,
    name: str,
    billing_email: str,
    ip_address: str | None = None,
) -> Organization:
    changed = {}
    if name.strip() and name.strip() != organization.name:
        changed["name"] = [organization.name, name.strip()]
        organization.name = name.strip()
    if billing_email != organization.billing_email:
        changed["billing_email"] = [organization.billing_email, billing_email]
        organization.billing_email = billing_email
    if changed:
        with transaction.atomic():
            organization.save(update_fields=["name", "billing_email"])
            for hook in _update_hooks:
                hook(organization=organization, changed=changed)
            audit_record(
                organization=organization,
                action="organization.updated",
                actor=actor,
                target=organization.slug,
                data=changed,
                ip_address=ip_address,
            )
    return organization


def organization_delete(
    *, organization: Organization, actor: Membership, confirm: str, ip_address: str | None = None
) -> None:
    """Delete an organization for its members: memberships, open invitations and API keys go at
    once; the row stays (renamed out of the way) so that payments and ledgers keep their owner.
    Registered hooks run in the same transaction (billing cancels the subscription after it)."""
    if not actor.is_owner or actor.organization_id != organization.pk:
        raise ServiceError("forbidden", "Only an owner can delete the organization.", status=403)
    if organization.is_personal:
        raise ServiceError(
            "personal_workspace", "A personal workspace belongs to its user and cannot be deleted."
        )
    if confirm.strip() != organization.name:
        raise ServiceError(
            "confirmation_mismatch",
            f"Type the organization's name, {organization.name}, to confirm.",
            field="confirm",
        )
    now = timezone.now()
    with transaction.atomic():
        locked = _lock_organization(organization)
        if locked.deleted_at is not None:
            raise ServiceError("already_deleted", "This organization was already deleted.", status=404)
        audit_record(
            organization=organization,
            action="organization.deleted",
            actor=actor.user,
            target=organization.slug,
            ip_address=ip_address,
        )
        Invitation.objects.pending().filter(organization=organization).update(status=InvitationStatus.REVOKED)
        ApiKey.objects.active().filter(organization=organization).update(revoked_at=now)
        keycache.invalidate()
        Membership.objects.filter(organization=organization).delete()
        # The primary key keeps the renamed slug unique; the old one is free for a new organization.
        slug = f"deleted-{organization.pk}-{organization.slug}"[:60]
        Organization.objects.filter(pk=organization.pk).update(deleted_at=now, slug=slug)
        organization.deleted_at, organization.slug = now, slug
        for hook in _deletion_hooks:
            hook(organization=organization)


def user_create(*, email: str, password: str, name: str = "") -> User:
    """A new user and their personal organization, in one transaction."""
    email = User.objects.normalize_email(email).lower()
    with transaction.atomic():
        if User.objects.filter(email__iexact=email).exists():
            raise ServiceError("email_taken", "An account with this email already exists.", field="email")
        user = User.objects.create_user(email=email, password=password, name=name.strip())
        label = user.name or email.split("@")[0]
        organization_create(owner=user, name=f"{label}'s workspace", is_personal=True)
    return user


def invitation_create(
    *,
    organization: Organization,
    actor: User,
    email: str,
    role: str = Role.MEMBER,
    ip_address: str | None = None,
) -> Invitation:
    email = User.objects.normalize_email(email).strip().lower()
    if role not in Role.values:
        raise ServiceError("invalid_role", f"Unknown role {role!r}.", field="role")
    if role == Role.OWNER:
        raise ServiceError(
            "invalid_role",
            "Invite as admin, then transfer ownership once they have joined.",
            field="role",
        )
    if Membership.objects.filter(organization=organization, user__email__iexact=email).exists():
        raise ServiceError("already_member", f"{email} is already a member.", field="email", status=409)
    try:
        with transaction.atomic():
            _lock_organization(organization)
            # An expired pending invitation still blocks the unique index; retire it first.
            Invitation.objects.pending().filter(
                organization=organization, email=email, expires_at__lte=timezone.now()
            ).update(status=InvitationStatus.REVOKED)
            # Open invitations hold a seat: inviting past the limit fails now, not when accepted.
            pending = (
                Invitation.objects.pending()
                .filter(organization=organization, expires_at__gt=timezone.now())
                .count()
            )
            _guard_membership(organization, adding=1, pending=pending)
            invitation = Invitation.objects.create(
                organization=organization,
                email=email,
                role=role,
                invited_by=actor,
                nonce=Invitation.new_nonce(),
                expires_at=Invitation.default_expiry(),
            )
            audit_record(
                organization=organization,
                action="invitation.created",
                actor=actor,
                target=email,
                data={"role": role},
                ip_address=ip_address,
            )
            send_invitation_email.delay_on_commit(invitation.pk)
    except IntegrityError:
        raise ServiceError(
            "already_invited",
            f"{email} already has an open invitation; resend it instead.",
            field="email",
            status=409,
        ) from None
    return invitation


def invitation_resend(*, invitation: Invitation, actor: User, ip_address: str | None = None) -> Invitation:
    """A fresh link and a fresh expiry; the previous link stops working."""
    now = timezone.now()
    nonce = Invitation.new_nonce()
    expires_at = Invitation.default_expiry()
    with transaction.atomic():
        updated = Invitation.objects.filter(pk=invitation.pk, status=InvitationStatus.PENDING).update(
            nonce=nonce, sent_at=now, expires_at=expires_at
        )
        if not updated:
            raise ServiceError("invitation_closed", "This invitation is no longer open.")
        audit_record(
            organization=invitation.organization,
            action="invitation.resent",
            actor=actor,
            target=invitation.email,
            ip_address=ip_address,
        )
        send_invitation_email.delay_on_commit(invitation.pk)
    invitation.nonce, invitation.sent_at, invitation.expires_at = nonce, now, expires_at
    return invitation


def invitation_revoke(*, invitation: Invitation, actor: User, ip_address: str | None = None) -> None:
    with transaction.atomic():
        updated = Invitation.objects.filter(pk=invitation.pk, status=InvitationStatus.PENDING).update(
            status=InvitationStatus.REVOKED
        )
        if not updated:
            raise ServiceError("invitation_closed", "This invitation is no longer open.")
        audit_record(
            organization=invitation.organization,
            action="invitation.revoked",
            actor=actor,
            target=invitation.email,
            ip_address=ip_address,
        )
    invitation.status = InvitationStatus.REVOKED


def invitation_check(*, invitation: Invitation, user: User | None) -> None:
    """Raise the reason `user` may not accept `invitation`, if there is one.

    With no user (a visitor not signed in yet) only the invitation's own state is checked.
    """
    if invitation.status == InvitationStatus.ACCEPTED:
        raise ServiceError("invitation_used", "This invitation has already been accepted.", status=410)
    if invitation.status == InvitationStatus.REVOKED:
        raise ServiceError("invitation_revoked", "This invitation was withdrawn.", status=410)
    if invitation.is_expired:
        raise ServiceError(
            "invitation_expired", "This invitation has expired; ask for a new one.", status=410
        )
    if user is None:
        return
    if user.email.lower() != invitation.email.lower():
        raise ServiceError(
            "wrong_account",
            f"This invitation is for {invitation.email}, but you are signed in as "
            f"{user.email}. Sign in with that address to accept it.",
            status=403,
        )
    if Membership.objects.filter(organization=invitation.organization, user=user).exists():
        raise ServiceError(
            "already_member",
            f"You are already a member of {invitation.organization}.",
            status=409,
        )


def invitation_accept(*, invitation: Invitation, user: User, ip_address: str | None = None) -> Membership:
    invitation_check(invitation=invitation, user=user)
    with transaction.atomic():
        # Two people accepting the last free seat at once queue on this lock; the second one
        # counts the first one's membership and is refused.
        _lock_organization(invitation.organization)
        _guard_membership(invitation.organization, adding=1, pending=0)
        # The conditional update is the gate: of two tabs accepting at once, one wins.
        claimed = Invitation.objects.filter(
            pk=invitation.pk, status=InvitationStatus.PENDING, expires_at__gt=timezone.now()
        ).update(status=InvitationStatus.ACCEPTED, accepted_by=user, accepted_at=timezone.now())
        if not claimed:
            raise ServiceError("invitation_used", "This invitation has already been accepted.")
        try:
            with transaction.atomic():
                membership = Membership.objects.create(
                    organization=invitation.organization, user=user, role=invitation.role
                )
        except IntegrityError:
            raise ServiceError(
                "already_member",
                f"You are already a member of {invitation.organization}.",
                status=409,
            ) from None
        audit_record(
            organization=invitation.organization,
            action="member.joined",
            actor=user,
            target=user.email,
            data={"role": invitation.role, "invitation": str(invitation.code)},
            ip_address=ip_address,
        )
    return membership


def _lock_owners(organization: Organization) -> list[Membership]:
    """Lock the organization's owner rows so that 'is this the last owner?' stays true."""
    return list(Membership.objects.select_for_update().filter(organization=organization, role=Role.OWNER))


def _lock_members(organization: Organization, *memberships: Membership) -> list[Membership]:
    """Serialize the organization's membership changes, then read the roles of the people
    involved afresh: the objects a request loaded may predate a change that committed since
    (a concurrent promotion or demotion), and every permission check must see the current one.
    Raises `not_found` for a membership that is gone."""
    _lock_organization(organization)
    fresh = {
        m.pk: m for m in Membership.objects.select_for_update().filter(pk__in=[m.pk for m in memberships])
    }
    for membership in memberships:
        current = fresh.get(membership.pk)
        if current is None:
            raise ServiceError("not_found", "That person is no longer a member.", status=404)
        membership.role = current.role
    return [fresh[m.pk] for m in memberships]


def membership_change_role(
    *, membership: Membership, actor: Membership, role: str, ip_address: str | None = None
) -> Membership:
    if role not in Role.values:
        raise ServiceError("invalid_role", f"Unknown role {role!r}.", field="role")
    with transaction.atomic():
        _lock_members(membership.organization, membership, actor)
        if not actor.can_manage_members:
            raise ServiceError("forbidden", "Only admins and owners change roles.", status=403)
        if (role == Role.OWNER or membership.role == Role.OWNER) and not actor.is_owner:
            raise ServiceError("forbidden", "Only an owner can grant or take away ownership.", status=403)
        owners = _lock_owners(membership.organization)
        if membership.role == Role.OWNER and role != Role.OWNER and len(owners) <= 1:
            raise ServiceError("last_owner", "An organization needs an owner; transfer ownership first.")
        previous = membership.role
        membership.role = role
        membership.save(update_fields=["role"])
        audit_record(
            organization=membership.organization,
            action="member.role_changed",
            actor=actor.user,
            target=membership.user.email,
            data={"from": previous, "to": role},
            ip_address=ip_address,
        )
    return membership


def membership_remove(*, membership: Membership, actor: Membership, ip_address: str | None = None) -> None:
    """Remove someone (or, with actor == membership, leave)."""
    leaving = membership.pk == actor.pk
    with transaction.atomic():
        _lock_members(membership.organization, membership, actor)
        if not leaving:
            if not actor.can_manage_members:
                raise ServiceError("forbidden", "Only admins and owners remove members.", status=403)
            if membership.is_owner and not actor.is_owner:
                raise ServiceError("forbidden", "Only an owner can remove an owner.", status=403)
        owners = _lock_owners(membership.organization)
        if membership.is_owner and len(owners) <= 1:
            raise ServiceError(
                "last_owner",
                "The last owner cannot leave; transfer ownership to someone else first.",
            )
        Membership.objects.filter(pk=membership.pk).delete()
        audit_record(
            organization=membership.organization,
            action="member.left" if leaving else "member.removed",
            actor=actor.user,
            target=membership.user.email,
            data={"role": membership.role},
            ip_address=ip_address,
        )


def ownership_transfer(
    *,
    organization: Organization,
    actor: Membership,
    to: Membership,
    ip_address: str | None = None,
) -> None:
    """Make `to` an owner and step the acting owner down to admin."""
    if to.pk == actor.pk or to.organization_id != organization.pk:
        raise ServiceError("invalid_member", "Choose another member of this organization.", field="member")
    with transaction.atomic():
        _lock_members(organization, to, actor)
        if not actor.is_owner:
            raise ServiceError("forbidden", "Only an owner can transfer ownership.", status=403)
        _lock_owners(organization)
        Membership.objects.filter(pk=to.pk).update(role=Role.OWNER)
        Membership.objects.filter(pk=actor.pk).update(role=Role.ADMIN)
        audit_record(
            organization=organization,
            action="organization.ownership_transferred",
            actor=actor.user,
            target=to.user.email,
            ip_address=ip_address,
        )
    to.role, actor.role = Role.OWNER, Role.ADMIN
