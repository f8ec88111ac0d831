"""Ending Tally's PostgreSQL connection from outside, as a restart or a failover would."""

import time

import psycopg
from django.db import connection


def terminate(pid: int) -> None:
    """End the server process `pid` and return once it is gone. pg_terminate_backend only
    signals it: until the process has exited, its reason may not have reached the client's
    socket yet, and a health check in that instant still finds the connection alive."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    with psycopg.connect(**params, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()[0]
        deadline = time.monotonic() + 10
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
            assert time.monotonic() < deadline, f"server process {pid} still running"
            time.sleep(0.005)
