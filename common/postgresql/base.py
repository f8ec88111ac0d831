"""Django's PostgreSQL backend with a health check that costs no round trip.

`CONN_HEALTH_CHECKS` makes Django run `SELECT 1` before the first query of every request that
reuses a connection: one more round trip per API call, to find the rare connection the server
has dropped. A server that ends a session (a restart, a failover, `pg_terminate_backend`) sends
its reason and closes the socket, and a cut connection reads as closed too; a healthy idle
connection has nothing to read. So a socket with nothing to read is taken as usable at once, and
anything else gets Django's own `SELECT 1`, which decides.
"""

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self):
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        try:
            readable, _, _ = select.select([connection.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        if not readable:
            return True
        return super().is_usable()
