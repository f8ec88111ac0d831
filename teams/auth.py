from rest_framework import authentication, exceptions, permissions

from common.errors import ServiceError
from teams.api_keys import api_key_authenticate
from teams.models import Scope


class ApiKeyPrincipal:
    """Who is calling when a server authenticates with an organization's API key."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    pk = None

    def __init__(self, api_key):
        self.api_key = api_key
        self.organization = api_key.organization

    def __str__(self) -> str:
        return f"API key {self.api_key.prefix}…"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer tly_...`: acts for the key's organization, not for a person."""

    keyword = "bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0].lower() != self.keyword:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Send the key as: Authorization: Bearer <key>.")
        # A view may name the cache keys it reads next (`prefetch_keys`): read with the key's.
        view = (getattr(request, "parser_context", None) or {}).get("view")
        key = api_key_authenticate(header[1], prefetch=getattr(view, "prefetch_keys", None))
        if key is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
        return ApiKeyPrincipal(key), key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


def required_scopes(view, method: str) -> set[str] | None:
    """The scopes a key needs for `method` on `view`, from the view's `scopes` mapping
    (`{"get": "read", "post": "credits:write"}`; a value may be a tuple of scopes). HEAD and
    OPTIONS read. None when the view does not say: refused, never guessed."""
    method = method.lower()
    if method in ("head", "options"):
        method = "get" if method == "head" else "options"
    mapping = getattr(view, "scopes", None) or {}
    needed = mapping.get(method, Scope.READ if method == "options" else None)
    if needed is None:
        return None
    return {needed} if isinstance(needed, str) else set(needed)


class HasScope(permissions.BasePermission):
    """An API key may call an endpoint only with the scopes its view names: otherwise 403
    `insufficient_scope`. A person's session is governed by their role, not by scopes."""

    def has_permission(self, request, view) -> bool:
        principal = request.user
        if not isinstance(principal, ApiKeyPrincipal):
            return True
        if not hasattr(view, request.method.lower()):
            return True  # nothing to run: the view answers 405 with the methods it allows
        needed = required_scopes(view, request.method)
        if needed is not None and principal.api_key.has_scopes(needed):
            return True
        if needed is None:
            message = "This request is not open to API keys."
        else:
            missing = sorted(needed - set(principal.api_key.scopes))
            plural = "s" if len(missing) > 1 else ""
            message = f"This request needs the API key scope{plural} {', '.join(missing)}."
        raise ServiceError("insufficient_scope", message, status=403)
