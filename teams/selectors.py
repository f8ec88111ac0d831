from teams.models import AuditEvent, Invitation, Membership, Organization, User


def organizations_for_user(user: User):
    return Organization.objects.alive().filter(memberships__user=user).order_by("-is_personal", "name")


def members_of(organization: Organization):
    return Membership.objects.filter(organization=organization).select_related("user")


def pending_invitations_of(organization: Organization):
    return (
        Invitation.objects.pending()
        .filter(organization=organization)
        .select_related("invited_by")
        .order_by("email")
    )


def recent_audit_events(organization: Organization, *, limit: int = 20):
    return AuditEvent.objects.filter(organization=organization).select_related("actor", "actor_api_key")[
        :limit
    ]
