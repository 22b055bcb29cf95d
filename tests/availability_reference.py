"""A deliberately plain availability implementation: sets of minutes, one rule at a time.

It shares nothing with the engine but the inputs. Every minute of the window is looked at on its
own: its local date and time decide working hours and booking areas, membership in a list decides
busy time. Slow and obviously right, which is the point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

MINUTE = 60
Span = tuple[int, int]  # minutes since local midnight, [a, b)


@dataclass
class ShiftSpec:
    """On every day from valid_from to valid_until the column works exactly weekly[weekday]: none is a day off."""

    valid_from: date
    valid_until: date
    weekly: dict[int, list[Span]]


@dataclass
class ColumnSpec:
    id: str
    weekly: dict[int, list[Span]]
    closed: set[date] = field(default_factory=set)
    shifts: list[ShiftSpec] = field(default_factory=list)
    blocked: list[tuple[int, int]] = field(default_factory=list)  # UTC seconds
    predefined: list[tuple[int, int]] | None = None  # PVS free slots, UTC seconds


@dataclass
class AreaSpec:
    id: str
    column: str | None
    types: set[str]
    weekly: dict[int, list[Span]]
    valid_from: date | None = None
    valid_until: date | None = None


@dataclass
class TypeSpec:
    id: str
    duration: int  # minutes
    buffer: int
    lead: int  # minutes
    horizon_days: int | None
    columns: list[str]


@dataclass
class Scenario:
    tz: str
    lo: int  # window, UTC seconds on whole minutes
    hi: int
    now: int
    grid: int  # minutes
    columns: list[ColumnSpec]
    areas: list[AreaSpec]
    types: list[TypeSpec]
    holds: list[tuple[str, int, int, int]]  # column, start, end, expire
    horizon_days: int = 2  # how far before the window the engine's horizon starts


@lru_cache(maxsize=1 << 16)
def _local(moment: int, tz: ZoneInfo) -> tuple[date, int, int]:
    """(local date, minute of local day, UTC offset in seconds) of an instant."""
    local = datetime.fromtimestamp(moment, tz)
    offset = local.utcoffset()
    assert offset is not None
    return local.date(), local.hour * 60 + local.minute, int(offset.total_seconds())


def _in_spans(minute_of_day: int, spans: list[Span]) -> bool:
    return any(a <= minute_of_day < b for a, b in spans)


def _working_spans(column: ColumnSpec, day: date) -> list[Span]:
    """What the column works on a local date."""
    if day in column.closed:
        return []
    shifts = [s for s in column.shifts if s.valid_from <= day <= s.valid_until]
    if shifts:  # the shifts' spans of this weekday replace the weekly hours, even when there are none
        return [span for s in shifts for span in s.weekly.get(day.isoweekday(), [])]
    return column.weekly.get(day.isoweekday(), [])


def free_minutes(scenario: Scenario, column: ColumnSpec, lo: int, hi: int) -> set[int]:
    """Instants (whole minutes) in [lo, hi) that are free in the column."""
    tz = ZoneInfo(scenario.tz)
    holds = [(s, e) for c, s, e, expire in scenario.holds if c == column.id and expire > scenario.now]
    free = set()
    working: dict[date, list[Span]] = {}
    for moment in range(lo, hi, MINUTE):
        day, minute_of_day, _ = _local(moment, tz)
        if day not in working:
            working[day] = _working_spans(column, day)
        if not _in_spans(minute_of_day, working[day]):
            continue
        if any(s <= moment < e for s, e in column.blocked) or any(s <= moment < e for s, e in holds):
            continue
        if column.predefined is not None and not any(s <= moment < e for s, e in column.predefined):
            continue
        free.add(moment)
    return free


def _foreign_area(scenario: Scenario, column: str, type_id: str, day: date, minute_of_day: int) -> bool:
    for area in scenario.areas:
        if area.column not in (None, column) or type_id in area.types:
            continue
        if area.valid_from is not None and day < area.valid_from:
            continue
        if area.valid_until is not None and day > area.valid_until:
            continue
        if _in_spans(minute_of_day, area.weekly.get(day.isoweekday(), [])):
            return True
    return False


def slots(scenario: Scenario, type_id: str) -> set[tuple[str, int]]:
    """(column, start) of every bookable slot of the type with its start in the window."""
    tz = ZoneInfo(scenario.tz)
    kind = next(t for t in scenario.types if t.id == type_id)
    need = (kind.duration + kind.buffer) * MINUTE
    earliest = max(scenario.lo, scenario.now + kind.lead * MINUTE)
    latest = scenario.hi - 1
    if kind.horizon_days is not None:
        latest = min(latest, scenario.now + kind.horizon_days * 86400)
    found = set()
    for column in scenario.columns:
        if column.id not in kind.columns:
            continue
        free = free_minutes(scenario, column, scenario.lo, scenario.hi + need)
        usable = set()
        for moment in free:
            day, minute_of_day, _ = _local(moment, tz)
            if not _foreign_area(scenario, column.id, type_id, day, minute_of_day):
                usable.add(moment)
        pvs_starts = {s for s, _ in column.predefined} if column.predefined is not None else None
        first = earliest + (-earliest) % MINUTE
        for start in range(first, latest + 1, MINUTE):
            if pvs_starts is not None:
                if start not in pvs_starts:
                    continue
            else:
                _, _, offset = _local(start, tz)
                if (start + offset) % (scenario.grid * MINUTE):
                    continue
            if all(m in usable for m in range(start, start + need, MINUTE)):
                found.add((column.id, start))
    return found
