"""Working time of a column from the rules a PVS keeps: weekly hours, shifts, closed days.

The seeds' PVSs keep weekly hours per column and record exceptions as they happen: a shift
replaces the weekly hours for a date range (a day of the range without a span for its weekday is a
day off), a closed day (holiday, practice closed) removes a day for one column or all. Turning that
into UTC instants is where daylight-saving days go wrong, so it happens here, once, for every
practice, and never in a vendor's adapter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, timedelta

from otv_rules.wallclock import expand_weekly, local_dates, zone
from otv_sdk.models import Calendar, ColumnIntervals, Interval, Shift, WeeklySpan, WorkingTimeRules
from otv_sdk.timeline import from_datetime

__all__ = ["working_time"]


def _shift_days(shifts: Iterable[Shift], first: date, last: date) -> dict[date, list[WeeklySpan]]:
    """Each day from first to last inside a shift -> what the column works that day instead of its
    weekly hours: the spans of that weekday of every shift covering the day; none is a day off."""
    days: dict[date, list[WeeklySpan]] = {}
    for shift in shifts:
        day = max(shift.valid_from, first)
        while day <= min(shift.valid_until, last):
            days.setdefault(day, []).extend(x for x in shift.spans if x.weekday == day.isoweekday())
            day += timedelta(days=1)
    return days


def working_time(
    calendar: Calendar, rules: WorkingTimeRules, time_zone: str, window: Interval, column_ids: Sequence[str]
) -> list[ColumnIntervals]:
    """Working time per column (every column if none are named), clipped to window."""
    tz = zone(time_zone)
    lo, hi = from_datetime(window.start), from_datetime(window.end)
    days = list(local_dates(window, tz))
    first, last = days[0], days[-1]
    hours = {column.id: column.weekly_hours for column in calendar.columns}
    result: list[ColumnIntervals] = []
    for column_id in column_ids or list(hours):
        closed = frozenset(
            d.day for d in rules.closed_days if d.column_id in (None, column_id) and first <= d.day <= last
        )
        shifts = [s for s in rules.shifts if s.column_id == column_id]
        working = expand_weekly(hours.get(column_id, ()), window, tz, closed, _shift_days(shifts, first, last))
        result.append(ColumnIntervals(column_id, working.clipped(lo, hi)))
    return result
