"""Stripe's events are applied through an index on every table that grows: the organizations'
tables, the global logs and dj-stripe's mirror of Stripe. A handler that scanned one (as finding
"the" event by its payload once did) would slow every webhook as the table grows; with
sequential scans priced out, no plan of a statement the handlers issued scans one."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.queryplans import scanning, statements


@pytest.mark.django_db(transaction=True)
def test_every_read_of_a_growing_table_by_the_event_handlers_uses_an_index(machine):
    with CaptureQueriesContext(connection) as captured:
        machine.subscribe(plan="team_monthly", declined=False)
        machine.member_joins()
        machine.seat_sync_runs()
        machine.time_passes(days=32, deliver=True)  # a renewal, paid
        machine.buy_credits(package="inv-small", declined=False, deliver=True)
        machine.refund_from_the_dashboard(which=0, part=True, deliver=True)
        machine.buy_credits_then_disputed(package="inv-small", deliver=True)
        machine.dispute_lost(which=0, accept=True, deliver=True)
        machine.card_starts_failing(deliver=True)
        machine.time_passes(days=32, deliver=True)  # a renewal that fails
        machine.card_fixed_and_invoices_paid(deliver=True)
        machine.cancel_now_from_the_dashboard(which=0, deliver=True)
        machine.handler_runs_again(index=3)
    assert not machine.deliveries.failures, machine.deliveries.failures
    sqls = statements(captured)
    assert any('FROM "djstripe_event"' in sql for sql in sqls)  # the handlers' payload reads
    assert len(sqls) > 100
    assert scanning(sqls) == []
