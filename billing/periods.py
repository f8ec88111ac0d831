"""Usage periods. Monthly quotas reset on the subscription's anchor day, even on a yearly plan;
organizations without a subscription use calendar months in UTC.

Like Stripe, a period anchored on the 31st ends on the last day of a shorter month and returns
to the 31st when the month has one: each boundary is computed from the anchor, never chained.
"""

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime

    def __contains__(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def add_months(anchor: datetime, months: int) -> datetime:
    total = anchor.month - 1 + months
    year, month = anchor.year + total // 12, total % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def monthly_period(anchor: datetime, at: datetime) -> Period:
    """The month-long period, counted from `anchor`, that contains `at`."""
    months = (at.year - anchor.year) * 12 + (at.month - anchor.month)
    start = add_months(anchor, months)
    if start > at:
        months -= 1
        start = add_months(anchor, months)
    return Period(start, add_months(anchor, months + 1))


def calendar_month(at: datetime) -> Period:
    at = at.astimezone(UTC)
    start = datetime(at.year, at.month, 1, tzinfo=UTC)
    return Period(start, add_months(start, 1))


def usage_period(anchor: datetime | None, at: datetime) -> Period:
    return monthly_period(anchor, at) if anchor else calendar_month(at)
