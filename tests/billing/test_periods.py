from datetime import UTC, datetime

from billing.periods import add_months, calendar_month, monthly_period


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_a_period_anchored_on_the_31st_ends_on_the_last_day_of_short_months():
    anchor = at(2026, 1, 31, 9)
    february = monthly_period(anchor, at(2026, 2, 15))
    assert (february.start, february.end) == (at(2026, 1, 31, 9), at(2026, 2, 28, 9))
    march = monthly_period(anchor, at(2026, 3, 1))
    assert (march.start, march.end) == (at(2026, 2, 28, 9), at(2026, 3, 31, 9))


def test_a_yearly_subscription_still_resets_monthly_on_the_anchor_day():
    anchor = at(2025, 6, 10, 12)
    period = monthly_period(anchor, at(2026, 11, 21))
    assert (period.start, period.end) == (at(2026, 11, 10, 12), at(2026, 12, 10, 12))


def test_the_boundary_belongs_to_the_new_period():
    anchor = at(2026, 1, 10)
    assert monthly_period(anchor, at(2026, 2, 10)).start == at(2026, 2, 10)


def test_without_a_subscription_periods_are_calendar_months():
    period = calendar_month(at(2026, 12, 31, 23, 59))
    assert (period.start, period.end) == (at(2026, 12, 1), at(2027, 1, 1))


def test_adding_months_across_a_leap_year():
    assert add_months(at(2024, 1, 31), 1) == at(2024, 2, 29)
