import re

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest

from common.errors import ServiceError
from teams.auth import ApiKeyPrincipal
from teams.models import Membership, Organization, Role
from teams.twofactor import two_factor_missing_for

_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,100}")


class TwoFactorRequired(PermissionDenied):
    """The organization requires a second factor of this member, who has none. Pages send the
    person to the page that says why (`teams.middleware.TwoFactorRequiredRedirect`); anything
    else that does not handle it answers 403."""

    def __init__(self, organization: Organization):
        super().__init__(f"{organization.name} requires two-factor sign-in for your role.")
        self.organization = organization


def get_org_for_user(
    request: HttpRequest, slug: str, *, min_role: str = Role.MEMBER
) -> tuple[Organization, Membership]:
    """The organization named by `slug` and the requester's membership in it.

    Someone who is not a member gets a 404, so an organization's existence is not revealed;
    a member without the role the action needs gets a 403.
    """
    user = request.user
    if not user.is_authenticated:
        raise Http404
    membership = (
        Membership.objects.select_related("organization")
        .filter(organization__slug=slug, organization__deleted_at__isnull=True, user=user)
        .first()
    )
    if membership is None:
        raise Http404
    if two_factor_missing_for(membership=membership):
        raise TwoFactorRequired(membership.organization)
    if not membership.has_role(min_role):
        raise PermissionDenied(f"This needs the {Role(min_role).label.lower()} role or higher.")
    return membership.organization, membership


def get_org_for_api(request, *, min_role: str = Role.MEMBER) -> Organization:
    """The organization an API request acts for.

    An API key acts for its own organization with full rights (keys are created by admins).
    A browser session names the organization with the `X-Tally-Org` header or `?org=`.
    """
    if isinstance(request.user, ApiKeyPrincipal):
        return request.user.organization
    slug = request.headers.get("X-Tally-Org") or request.query_params.get("org", "")
    if not slug:
        raise Http404("Name the organization with the X-Tally-Org header or ?org=.")
    if not _SLUG.fullmatch(slug):
        # No organization has such a slug; answered like any unknown one.
        raise Http404
    try:
        organization, _ = get_org_for_user(request, slug, min_role=min_role)
    except TwoFactorRequired as refusal:
        raise ServiceError("two_factor_required", str(refusal), status=403) from None
    return organization


def client_ip(request) -> str | None:
    """The peer address for the audit log. Behind a proxy, configure it to set REMOTE_ADDR."""
    return request.META.get("REMOTE_ADDR") or None
