"""The WSGI entry point: a server's API calls skip the middleware only pages need.

A request to /api/ with `Authorization: Bearer ...` is authenticated by its key, never by a
session or a cookie, and answers JSON: sessions, CSRF, messages, htmx, frame options and the
pages' Content-Security-Policy have nothing to do there, yet cost each call their time. Those
requests go through `API_MIDDLEWARE` (a subset of `MIDDLEWARE`, in the same order); everything
else, browsers' API calls included, through the whole of `MIDDLEWARE`.
"""

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler


class _ApiHandler(WSGIHandler):
    def load_middleware(self, is_async=False):
        # Django builds the chain from settings.MIDDLEWARE, once, at start-up.
        everything = settings.MIDDLEWARE
        settings.MIDDLEWARE = [m for m in everything if m in settings.API_MIDDLEWARE]
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = everything


def is_keyed_api_call(environ) -> bool:
    return (
        environ.get("PATH_INFO", "").startswith("/api/")
        and environ.get("HTTP_AUTHORIZATION", "")[:7].lower() == "bearer "
    )


class Application:
    def __init__(self):
        self.pages = WSGIHandler()
        self.api = _ApiHandler()

    def __call__(self, environ, start_response):
        handler = self.api if is_keyed_api_call(environ) else self.pages
        return handler(environ, start_response)


application = Application()
