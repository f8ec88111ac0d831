"""PostgreSQL dropping Tally's connections (a restart, a failover): the request that meets a
dropped connection gets a clean 503, and the next request works on a new connection, without
a restart."""

import json

import pytest
from django.core import signals
from django.db import close_old_connections, connection
from django.urls import reverse

from tests.backends import terminate

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_connection_dropped_between_requests_is_replaced(client_for, org, owner):
    client = client_for(owner)
    url = reverse("billing", args=[org.slug])
    assert client.get(url).status_code == 200
    terminate(connection.connection.info.backend_pid)
    # What every request does first (the test client skips it): the kept connection's health
    # check (CONN_HEALTH_CHECKS) finds it dead, and the request opens another.
    close_old_connections()
    assert client.get(url).status_code == 200


def test_a_connection_dropped_mid_request_is_a_clean_503_then_recovers(client_for, org, owner):
    # The test client skips the per-request health check, as a request does once it has
    # checked its connection: the drop below happens "during" the next request.
    client = client_for(owner)
    url = reverse("billing", args=[org.slug])
    assert client.get(url).status_code == 200
    terminate(connection.connection.info.backend_pid)
    failed = client.get(url)
    assert failed.status_code == 503 and failed["Retry-After"] == "5"
    close_old_connections()  # what the end of every request does (the test client skips it)
    assert client.get(url).status_code == 200


def test_a_keyed_api_call_that_meets_a_dropped_connection_is_a_clean_503(org, owner):
    # Keyed API calls go through their own, shorter middleware chain (config/handlers.py): it
    # must turn the database going away into the same 503, not a 500.
    from config.handlers import Application
    from teams import api_keys
    from tests.config.test_handlers import call

    _, secret = api_keys.api_key_create(organization=org, actor=owner, name="server")
    app = Application()
    # As the test client does, the request's own health checks are left out: the drop below
    # happens "during" the next request. close_old_connections() stands for a request's end.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        status, _, _ = call(app, "/api/v1/credits/balance", authorization=f"Bearer {secret}")
        assert status == 200
        terminate(connection.connection.info.backend_pid)
        status, headers, content = call(app, "/api/v1/credits/balance", authorization=f"Bearer {secret}")
        assert status == 503 and headers["Retry-After"] == "5"
        assert json.loads(content)["code"] == "service_unavailable"
        close_old_connections()
        status, _, _ = call(app, "/api/v1/credits/balance", authorization=f"Bearer {secret}")
        assert status == 200
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
