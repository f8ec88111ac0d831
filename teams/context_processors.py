from teams.selectors import organizations_for_user


def organizations(request):
    """The org switcher: the requester's organizations and the one the URL names."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    match = getattr(request, "resolver_match", None)
    current_slug = match.kwargs.get("org_slug") if match else None
    orgs = list(organizations_for_user(user))
    current = next((o for o in orgs if o.slug == current_slug), None)
    return {"nav_organizations": orgs, "current_org": current}
