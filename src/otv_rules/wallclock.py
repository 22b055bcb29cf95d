"""Practice wall-clock rules -> UTC instants, exact on daylight-saving days.

The rule: an instant belongs to a wall-clock span "weekday 08:00-12:00" when its local date is such
a weekday and its local time of day lies in [08:00, 12:00). Everything follows from that:
- In the spring gap (02:00-03:00 in Europe/Berlin on the last Sunday of March) no instant has a
  local time inside the gap, so a span 01:00-03:00 that day lasts one real hour.
- In the autumn overlap (02:00-03:00 happens twice on the last Sunday of October) both
  occurrences belong, so a span 01:00-04:00 lasts four real hours, and 02:30-03:00 is two pieces.
- A single wall-clock time (`to_utc`) is the first instant whose local time is at or after it:
  a time in the gap maps to the moment the clocks jump, a repeated time to its first occurrence.
- Where the clocks jump at local midnight (America/Havana, America/Santiago, Atlantic/Azores,
  Africa/Cairo: 00:00 -> 01:00) the switch day has no 00:00-01:00: it starts at the switch, so a
  span 00:00-06:00 that day lasts five real hours and never reaches into the day before. Where they
  jump at 23:00 to 00:00 (America/Nuuk) the day before ends at the switch.

`LocalDays` precomputes, for a range of local dates, when each day starts in UTC and which offset
applies, so expanding weekly rules over 24 months is array arithmetic; only the few days with a
transition (inside the day, or at its first instant or just after its last) are handled one by one.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

from otv_sdk.models import UTC, Interval, WeeklySpan
from otv_sdk.timeline import EMPTY, IntervalArray, Seconds, from_datetime, normalize

__all__ = ["LocalDays", "expand_weekly", "local_dates", "local_days", "seconds_of_day", "to_utc", "zone"]

_DAY = 86400


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The IANA zone; raises ValueError for an unknown name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown IANA time zone {name!r}") from error


def _offset(instant: int, tz: ZoneInfo) -> int:
    offset = datetime.fromtimestamp(instant, tz).utcoffset()
    assert offset is not None
    return int(offset.total_seconds())


def _first_instant_at_or_after(naive_local: int, tz: ZoneInfo) -> int:
    """First UTC second whose local time (as naive epoch seconds) is >= naive_local."""
    # Candidates: the naive value read with each offset in effect around it.
    guesses = sorted({naive_local - _offset(naive_local - o, tz) for o in (-_DAY // 2, 0, _DAY // 2)})
    for guess in guesses:
        if guess + _offset(guess, tz) == naive_local:
            return guess
    # In a gap: the jump lies between a second before and one after; find it.
    low, high = guesses[0], guesses[-1]
    while high - low > 1:
        middle = (low + high) // 2
        if middle + _offset(middle, tz) >= naive_local:
            high = middle
        else:
            low = middle
    return high


def _naive(day: date, clock: time = time(0)) -> int:
    return (day.toordinal() - 719163) * _DAY + clock.hour * 3600 + clock.minute * 60 + clock.second


def to_utc(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of a wall-clock time on a day (first instant at or after it)."""
    return datetime.fromtimestamp(_first_instant_at_or_after(_naive(day, clock), tz), UTC)


def seconds_of_day(clock: time) -> int:
    return clock.hour * 3600 + clock.minute * 60 + clock.second


@dataclass(frozen=True, slots=True, eq=False)
class LocalDays:
    """The local dates first..first+count-1 of a zone, with what is needed to place spans on them."""

    tz: ZoneInfo
    first: date
    midnight: Seconds  # local midnight of each day, as naive epoch seconds
    offset: Seconds  # UTC offset at the day's first instant
    weekday: npt.NDArray[np.int8]  # ISO weekday, 1 = Monday
    uniform: npt.NDArray[np.bool_]  # runs from local 00:00 to the next 00:00 at one offset
    transitions: Seconds  # instants where the offset changes, ascending
    offsets_after: Seconds  # offset from each transition on; offsets_after[0] is the one before all

    def __len__(self) -> int:
        return int(self.midnight.shape[0])

    def index(self, day: date) -> int:
        return day.toordinal() - self.first.toordinal()

    def dates(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range(len(self))]

    def offset_at(self, instants: Seconds) -> Seconds:
        """The UTC offset in effect at each instant (within the covered days)."""
        return self.offsets_after[np.searchsorted(self.transitions, instants, side="right")]

    def expand(self, spans: Sequence[WeeklySpan], include: npt.NDArray[np.bool_] | None = None) -> IntervalArray:
        """Weekly spans on every included day, as normalised UTC intervals."""
        if not spans:
            return EMPTY
        mask = np.ones(len(self), dtype=bool) if include is None else include
        starts: list[Seconds] = []
        ends: list[Seconds] = []
        for span in spans:
            days = mask & (self.weekday == span.weekday)
            a, b = seconds_of_day(span.start), seconds_of_day(span.end)
            plain = days & self.uniform
            base = self.midnight[plain] - self.offset[plain]
            starts.append(base + a)
            ends.append(base + b)
            for index in np.flatnonzero(days & ~self.uniform).tolist():
                for s, e in self._span_on_transition_day(index, a, b):
                    starts.append(np.array([s], dtype=np.int64))
                    ends.append(np.array([e], dtype=np.int64))
        return normalize(IntervalArray(np.concatenate(starts), np.concatenate(ends)))

    def day_bounds(self, index: int) -> tuple[int, int]:
        """First instant of the day and of the next day."""
        start = _first_instant_at_or_after(int(self.midnight[index]), self.tz)
        return start, _first_instant_at_or_after(int(self.midnight[index]) + _DAY, self.tz)

    def _span_on_transition_day(self, index: int, a: int, b: int) -> list[tuple[int, int]]:
        day_start, day_end = self.day_bounds(index)
        inside = self.transitions[(self.transitions > day_start) & (self.transitions < day_end)].tolist()
        cuts = [day_start, *inside, day_end]
        midnight = int(self.midnight[index])
        pieces = []
        for p0, p1 in itertools.pairwise(cuts):
            o = _offset(p0, self.tz)
            s, e = max(p0, midnight + a - o), min(p1, midnight + b - o)
            if e > s:
                pieces.append((s, e))
        return pieces


def _transition_in(low: int, high: int, tz: ZoneInfo) -> int:
    """The instant in (low, high] where the offset changes, given that it changes once."""
    before = _offset(low, tz)
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(middle, tz) == before:
            low = middle
        else:
            high = middle
    return high


@lru_cache(maxsize=32)
def local_days(tz_name: str, first: date, last: date) -> LocalDays:
    """Precompute the local dates first..last (inclusive) of a zone. Cached: zones do not change.

    A day is uniform when its instants run from its local 00:00 to the next day's 00:00 at one offset.
    It is not when the offset changes inside it, and also when a switch at local midnight makes it
    start later (00:00 falls in the gap: the day begins at 01:00, at the switch) or end earlier (its
    23:00-24:00 falls in the gap). A switch exactly at a day's first instant is a transition too.
    """
    tz = zone(tz_name)
    count = last.toordinal() - first.toordinal() + 1
    midnight = np.array([_naive(first + timedelta(days=i)) for i in range(count + 1)], dtype=np.int64)
    starts = np.array([_first_instant_at_or_after(int(m), tz) for m in midnight], dtype=np.int64)
    offset_start = np.array([_offset(int(s), tz) for s in starts], dtype=np.int64)
    offset_before = np.array([_offset(int(s) - 1, tz) for s in starts], dtype=np.int64)  # just before the day
    within = offset_start[:-1] == offset_before[1:]  # one offset from the day's first instant to its last
    uniform = (
        within
        & (starts[:-1] == midnight[:-1] - offset_start[:-1])  # the day starts at its local 00:00
        & (starts[1:] == midnight[1:] - offset_start[:-1])  # and lasts until the next day's 00:00
    )
    at_start = starts[offset_before != offset_start]  # switches that are a day's first instant
    inside = [_transition_in(int(starts[i]), int(starts[i + 1]) - 1, tz) for i in np.flatnonzero(~within).tolist()]
    transitions = np.sort(np.concatenate((at_start, np.array(inside, dtype=np.int64))))
    offsets_after = [int(offset_before[0])] + [_offset(int(t), tz) for t in transitions]
    weekday = np.array([(first + timedelta(days=i)).isoweekday() for i in range(count)], dtype=np.int8)
    return LocalDays(
        tz=tz,
        first=first,
        midnight=midnight[:-1],
        offset=offset_start[:-1],
        weekday=weekday,
        uniform=uniform,
        transitions=transitions,
        offsets_after=np.array(offsets_after, dtype=np.int64),
    )


def local_dates(window: Interval, tz: ZoneInfo) -> Iterable[date]:
    """Every local date that overlaps window (one day of margin on each side is cheap and safe)."""
    day = window.start.astimezone(tz).date() - timedelta(days=1)
    last = window.end.astimezone(tz).date() + timedelta(days=1)
    while day <= last:
        yield day
        day += timedelta(days=1)


def days_for(window_lo: int, window_hi: int, tz_name: str) -> LocalDays:
    """LocalDays covering every local date that overlaps [window_lo, window_hi), with a day's margin."""
    tz = zone(tz_name)
    first = datetime.fromtimestamp(window_lo, tz).date() - timedelta(days=1)
    last = datetime.fromtimestamp(window_hi, tz).date() + timedelta(days=1)
    return local_days(tz_name, first, last)


def expand_weekly(
    spans: Sequence[WeeklySpan],
    window: Interval,
    tz: ZoneInfo,
    closed: frozenset[date] = frozenset(),
    overrides: Mapping[date, Sequence[WeeklySpan]] | None = None,
) -> IntervalArray:
    """Weekly spans overlapping window: on `overrides` days only the day's spans there (none: a day
    off), on `closed` days nothing."""
    lo, hi = from_datetime(window.start), from_datetime(window.end)
    days = days_for(lo, hi, tz.key)
    include = np.ones(len(days), dtype=bool)
    special = set(closed) | set(overrides or ())
    for day in special:
        index = days.index(day)
        if 0 <= index < len(days):
            include[index] = False
    parts = [days.expand(spans, include)]
    for day, day_spans in (overrides or {}).items():
        index = days.index(day)
        if day in closed or not 0 <= index < len(days):
            continue
        only = np.zeros(len(days), dtype=bool)
        only[index] = True
        parts.append(days.expand(day_spans, only))
    merged = normalize(
        IntervalArray(np.concatenate([p.starts for p in parts]), np.concatenate([p.ends for p in parts]))
    )
    return merged.overlapping(lo, hi)
