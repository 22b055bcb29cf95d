"""Time windows: the 24-month limit and month arithmetic.

Partners ask for windows of "up to 24 months"; months have different lengths, so the limit is
calendar months from the start (in UTC), not a fixed number of days.
"""

from __future__ import annotations

import calendar
from datetime import datetime

__all__ = ["MAX_WINDOW_MONTHS", "add_months", "window_too_long"]

MAX_WINDOW_MONTHS = 24


def add_months(moment: datetime, months: int) -> datetime:
    """Same day and time `months` later, clamped to the month's last day (Jan 31 + 1 -> Feb 28/29)."""
    index = moment.year * 12 + (moment.month - 1) + months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def window_too_long(start: datetime, end: datetime, months: int = MAX_WINDOW_MONTHS) -> bool:
    return end > add_months(start, months)
