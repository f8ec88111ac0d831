"""PostgreSQL dropping Tally's connections (a restart, a failover): the request that meets a
dropped connection gets a clean 503, and the next request works on a new connection, without
a restart."""

import psycopg
import pytest
from django.db import close_old_connections, connection
from django.urls import reverse

pytestmark = pytest.mark.django_db(transaction=True)


def _terminate(pid: int) -> None:
    """pg_terminate_backend on Tally's connection, from another one (as a restart would)."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    with psycopg.connect(**params, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()[0]


def test_a_connection_dropped_between_requests_is_replaced(client_for, org, owner):
    client = client_for(owner)
    url = reverse("billing", args=[org.slug])
    assert client.get(url).status_code == 200
    _terminate(connection.connection.info.backend_pid)
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
    _terminate(connection.connection.info.backend_pid)
    failed = client.get(url)
    assert failed.status_code == 503 and failed["Retry-After"] == "5"
    close_old_connections()  # what the end of every request does (the test client skips it)
    assert client.get(url).status_code == 200
