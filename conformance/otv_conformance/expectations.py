"""What a correct adapter must answer for a placed scenario, computed independently of the SDK.

Deliberately plain: per local day, per rule, with `zoneinfo` and integer seconds, sharing no code
with the availability engine the reference adapter uses. A bug in the engine then shows up as a
difference here instead of being repeated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta

from otv_conformance.scenarios import PlacedScenario
from otv_sdk.models import AppointmentType, Interval, WeeklySpan

__all__ = [
    "SLOT_GRID_MINUTES",
    "Spans",
    "clip",
    "expected_absences",
    "expected_busy",
    "expected_free",
    "expected_slot_starts",
    "expected_working",
    "in_foreign_area",
    "normalize",
    "seconds",
    "subtract",
]

Spans = list[tuple[int, int]]

# Slots start every 5 minutes of local time: the suite configures its gateway with this grid
# (`slot_grid_minutes`, the gateway's default), so the expected starts below are exact.
SLOT_GRID_MINUTES = 5


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


def in_foreign_area(placed: PlacedScenario, type_id: str, column_id: str, start: int, end: int) -> bool:
    """Whether [start, end) overlaps a booking area of that column whose types exclude type_id."""
    for area in placed.scenario.calendar.booking_areas:
        if type_id in area.appointment_type_ids or area.column_id not in (None, column_id):
            continue
        local = datetime.fromtimestamp(start, placed.tz).date()
        for day in (local - timedelta(days=1), local, local + timedelta(days=1)):
            if (area.valid_from and day < area.valid_from) or (area.valid_until and day > area.valid_until):
                continue
            for span in area.weekly_spans:
                if span.weekday == day.isoweekday():
                    a_start, a_end = _span_on(placed, day, span)
                    if start < a_end and end > a_start:
                        return True
    return False


def _next_on_grid(placed: PlacedScenario, instant: int) -> int:
    """The first instant at or after `instant` whose local time of day is on the grid."""
    grid = SLOT_GRID_MINUTES * 60
    candidate = instant
    for _ in range(3):  # a daylight-saving switch between instant and candidate moves the grid once
        offset = int((datetime.fromtimestamp(candidate, placed.tz).utcoffset() or timedelta(0)).total_seconds())
        aligned = instant + (-(instant + offset)) % grid
        if aligned == candidate:
            return aligned
        candidate = aligned
    return candidate


def expected_slot_starts(
    placed: PlacedScenario, window: Interval, appointment_type: AppointmentType, column_id: str, now: int
) -> list[int]:
    """Every start a correct gateway offers for the type in the column (docs/availability.md): on the
    local grid, inside the window, after the lead time and within the horizon, with duration and
    buffer in free time and in no booking area that excludes the type."""
    t = appointment_type
    need = int((t.duration + t.buffer).total_seconds())
    lo = max(seconds(window.start), now + int(t.min_lead.total_seconds()))
    hi = seconds(window.end) - 1  # the window contains the start; the slot may end after it
    if t.max_horizon is not None:
        hi = min(hi, now + int(t.max_horizon.total_seconds()))
    beyond = Interval(window.start, window.end + timedelta(days=1))
    starts: list[int] = []
    for free_start, free_end in expected_free(placed, beyond, column_id):
        start = _next_on_grid(placed, max(free_start, lo))
        while start + need <= free_end and start <= hi:
            if not in_foreign_area(placed, t.id, column_id, start, start + need):
                starts.append(start)
            start = _next_on_grid(placed, start + 60)
    return starts
