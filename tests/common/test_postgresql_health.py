"""The connection health check: free for a healthy connection, decisive for a dropped one."""

import os
import signal
import threading
import time

import psycopg
import pytest
from django.db import connection

from tests.backends import terminate

pytestmark = pytest.mark.django_db(transaction=True)


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _admin():
    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"], autocommit=True
    )


def test_a_healthy_connection_is_taken_as_usable_without_asking_the_server():
    pid = _backend_pid()
    # While stopped, this connection's server process answers nothing: a check that sent
    # `SELECT 1` would wait until the timer lets it go, 3 s later.
    os.kill(pid, signal.SIGSTOP)
    resume = threading.Timer(3, os.kill, (pid, signal.SIGCONT))
    resume.start()
    try:
        started = time.monotonic()
        assert connection.is_usable()
        assert time.monotonic() - started < 1
    finally:
        resume.cancel()
        os.kill(pid, signal.SIGCONT)
    assert _backend_pid() == pid


def test_a_connection_the_server_ended_is_not_usable_and_the_next_request_gets_a_new_one():
    pid = _backend_pid()
    terminate(pid)  # gone: it sent its reason and closed the socket on the way out
    assert not connection.is_usable()
    connection.close_if_unusable_or_obsolete()
    assert _backend_pid() != pid


def test_it_is_the_engine_the_settings_name():
    assert connection.settings_dict["ENGINE"] == "common.postgresql"
    assert connection.vendor == "postgresql"
