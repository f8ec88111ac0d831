from teams.models import Membership
from teams.selectors import organizations_for_user


def organizations(request):
    """The org switcher: the requester's organizations, the one the URL names, and the
    requester's membership in it (the navigation shows only what that role may open)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    match = getattr(request, "resolver_match", None)
    current_slug = match.kwargs.get("org_slug") if match else None
    orgs = list(organizations_for_user(user))
    current = next((o for o in orgs if o.slug == current_slug), None)
    membership = Membership.objects.filter(organization=current, user=user).first() if current else None
    return {"nav_organizations": orgs, "current_org": current, "current_membership": membership}
