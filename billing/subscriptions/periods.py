"""Where the apps above billing hook into a subscription's billing periods.

Billing knows when a period may have started (a paid invoice, a subscription event, a trial) and
when a subscription ended early (refunded, canceled now, unpaid, deleted, its organization
deleted); what follows belongs to the apps above it: credits grants a plan's allowance and takes
back what remains of it. They register here from their AppConfig.ready(), the way billing
registers its seat guard with teams; billing imports nothing of them.
"""

from collections.abc import Callable
from typing import Any

from billing.models import OrgSubscription
from teams.models import Organization

# started(subscription=OrgSubscription); ended(organization=, subscription_id=, reason=)
_started: list[Callable[..., Any]] = []
_ended: list[Callable[..., Any]] = []


def period_hooks_register(*, started: Callable[..., Any], ended: Callable[..., Any]) -> None:
    """Have `started` called after every sync that may have started a period, and `ended` when a
    subscription ends at once. Both run again for the same period or the same end (events come
    duplicated and out of order): they must be idempotent."""
    if started not in _started:
        _started.append(started)
    if ended not in _ended:
        _ended.append(ended)


def period_started(*, subscription: OrgSubscription | None) -> None:
    if subscription is None:
        return
    for handler in _started:
        handler(subscription=subscription)


def subscription_ended(*, organization: Organization, subscription_id: str, reason: str) -> None:
    for handler in _ended:
        handler(organization=organization, subscription_id=subscription_id, reason=reason)
