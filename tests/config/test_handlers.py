"""The WSGI entry point sends API calls with a key through the API's middleware only, and
everything else through all of it."""

import io
import json

import pytest
from django.conf import settings
from django.core import signals
from django.db import close_old_connections

from config.handlers import Application
from teams import api_keys

pytestmark = pytest.mark.django_db


def call(app, path, *, method="GET", body=b"", **headers):
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json",
        **{f"HTTP_{k.upper()}": v for k, v in headers.items()},
    }
    seen = {}

    def start_response(status, response_headers, exc_info=None):
        seen["status"], seen["headers"] = int(status.split()[0]), dict(response_headers)

    content = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], content


@pytest.fixture
def app():
    # As Django's test client does: the test's transaction must survive the request.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield Application()
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def test_the_api_chain_is_a_subset_of_the_whole_in_the_same_order():
    assert set(settings.API_MIDDLEWARE) <= set(settings.MIDDLEWARE)
    kept = [m for m in settings.MIDDLEWARE if m in settings.API_MIDDLEWARE]
    assert kept == settings.API_MIDDLEWARE


def test_a_keyed_api_call_skips_the_pages_middleware(app, org, owner):
    _, secret = api_keys.api_key_create(organization=org, actor=owner, name="server")
    status, headers, content = call(app, "/api/v1/credits/balance", authorization=f"Bearer {secret}")
    assert status == 200 and "balance" in json.loads(content)
    assert headers["Cache-Control"] == "no-store" and headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" not in headers and "Set-Cookie" not in headers


def test_errors_keep_the_api_shape_on_the_short_chain(app):
    status, _, content = call(app, "/api/v1/credits/balance", authorization="Bearer tly_unknown")
    assert status == 401 and json.loads(content)["code"] == "authentication_failed"
    status, _, content = call(app, "/api/v1/no-such-thing", authorization="Bearer tly_unknown")
    assert status == 404 and json.loads(content)["code"] == "not_found"


def test_pages_and_browser_api_calls_keep_every_middleware(app):
    status, headers, _ = call(app, "/pricing/")
    assert status == 200 and "Content-Security-Policy" in headers and headers["X-Frame-Options"] == "DENY"
    # A browser's API call, by its session cookie: CSRF still guards its writes.
    status, _, content = call(app, "/api/v1/credits/consume", method="POST", body=b"{}", cookie="sessionid=x")
    assert status in (401, 403)
