from teams.models import Membership


def organizations(request):
    """The org switcher: the requester's organizations, the one the URL names, and the
    requester's membership in it (the navigation shows only what that role may open).
    One query: the memberships, each with its organization."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    match = getattr(request, "resolver_match", None)
    current_slug = match.kwargs.get("org_slug") if match else None
    memberships = list(
        Membership.objects.filter(user=user, organization__deleted_at__isnull=True)
        .select_related("organization")
        .order_by("-organization__is_personal", "organization__name")
    )
    current = next((m for m in memberships if m.organization.slug == current_slug), None)
    return {
        "nav_organizations": [m.organization for m in memberships],
        "current_org": current.organization if current else None,
        "current_membership": current,
    }
