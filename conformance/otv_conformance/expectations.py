"""What a correct adapter must answer for a placed scenario, computed independently of the SDK.

Deliberately plain: per local day, per rule, with `zoneinfo` and integer seconds, sharing no code
with the availability engine the reference adapter uses. A bug in the engine then shows up as a
difference here instead of being repeated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta

from otv_conformance.scenarios import PlacedScenario
from otv_sdk.models import Interval, WeeklySpan

__all__ = [
    "Spans",
    "clip",
    "expected_absences",
    "expected_busy",
    "expected_free",
    "expected_working",
    "normalize",
    "seconds",
    "subtract",
]

Spans = list[tuple[int, int]]


def seconds(value: datetime) -> int:
    return int(value.timestamp())


def normalize(spans: Iterable[tuple[int, int]]) -> Spans:
    """Sorted, merged, without empty spans."""
    result: Spans = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if result and start <= result[-1][1]:
            result[-1] = (result[-1][0], max(result[-1][1], end))
        else:
            result.append((start, end))
    return result


def subtract(base: Spans, cut: Spans) -> Spans:
    result: Spans = []
    cut = normalize(cut)
    for start, end in normalize(base):
        cursor = start
        for c_start, c_end in cut:
            if c_end <= cursor or c_start >= end:
                continue
            if c_start > cursor:
                result.append((cursor, c_start))
            cursor = max(cursor, c_end)
        if cursor < end:
            result.append((cursor, end))
    return result


def clip(spans: Spans, window: Interval) -> Spans:
    lo, hi = seconds(window.start), seconds(window.end)
    return normalize((max(s, lo), min(e, hi)) for s, e in spans)


def _local_days(placed: PlacedScenario, window: Interval) -> list[date]:
    first = window.start.astimezone(placed.tz).date() - timedelta(days=1)
    last = window.end.astimezone(placed.tz).date() + timedelta(days=1)
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _span_on(placed: PlacedScenario, day: date, span: WeeklySpan) -> tuple[int, int]:
    start = datetime.combine(day, span.start, placed.tz).astimezone(UTC)
    end = datetime.combine(day, span.end, placed.tz).astimezone(UTC)
    return seconds(start), seconds(end)


def _spans_of_day(placed: PlacedScenario, column_id: str, day: date) -> Sequence[WeeklySpan]:
    scenario = placed.scenario
    if any(c.day == day and c.column_id in (None, column_id) for c in scenario.closed_days):
        return ()
    shifts = [s for s in scenario.shifts if s.column_id == column_id and s.valid_from <= day <= s.valid_until]
    if shifts:
        return [x for s in shifts for x in s.spans if x.weekday == day.isoweekday()]
    column = next(c for c in scenario.calendar.columns if c.id == column_id)
    return [x for x in column.weekly_hours if x.weekday == day.isoweekday()]


def expected_working(placed: PlacedScenario, window: Interval, column_id: str) -> Spans:
    spans = [
        _span_on(placed, day, span)
        for day in _local_days(placed, window)
        for span in _spans_of_day(placed, column_id, day)
    ]
    return clip(spans, window)


def expected_absences(placed: PlacedScenario, window: Interval, column_id: str) -> Spans:
    """Unclipped: an absence overlapping the window is listed with its true extent."""
    lo, hi = seconds(window.start), seconds(window.end)
    found = [
        (seconds(a.interval.start), seconds(a.interval.end))
        for a in placed.scenario.absences
        if a.column_id == column_id
    ]
    return sorted(s for s in found if s[0] < hi and s[1] > lo)


def expected_busy(placed: PlacedScenario, window: Interval, column_id: str) -> Spans:
    entries = [
        (seconds(e.interval.start), seconds(e.interval.end))
        for e in placed.scenario.entries
        if column_id in e.column_ids
    ]
    return clip(entries, window)


def expected_free(placed: PlacedScenario, window: Interval, column_id: str) -> Spans:
    absent = [(s, e) for s, e in expected_absences(placed, window, column_id)]
    blocked = absent + expected_busy(placed, window, column_id)
    return clip(subtract(expected_working(placed, window, column_id), blocked), window)
