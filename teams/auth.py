from rest_framework import authentication, exceptions

from teams.services import api_key_authenticate


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
        key = api_key_authenticate(header[1])
        if key is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
        return ApiKeyPrincipal(key), key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'
