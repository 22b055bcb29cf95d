"""Practice wall-clock time -> UTC instants, exact on daylight-saving days.

Rules (the same for every IANA zone):
- A wall-clock time that does not exist (the spring-forward gap, 02:00-03:00 in Europe/Berlin on
  the last Sunday of March) resolves to the instant the clocks jump, so a span 01:00-03:00 on that
  day lasts one real hour and nothing is invented inside the gap.
- A wall-clock time that exists twice (the autumn fall-back hour) resolves to its first occurrence,
  so a span 01:00-04:00 on that day lasts four real hours.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from otv_sdk.models import UTC, Interval, WeeklySpan

__all__ = ["expand_weekly", "local_dates", "to_utc", "zone"]


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The IANA zone; raises ValueError for an unknown name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown IANA time zone {name!r}") from error


def to_utc(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of a wall-clock time on a day, by the rules in the module docstring."""
    naive = datetime.combine(day, clock)
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == naive:
        return first  # exists (once, or first of two)
    # In a gap: fold=1 lies before the jump and fold=0 after it; find the jump to the second.
    low = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    high = first
    low_offset = low.astimezone(tz).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = (low + (high - low) / 2).replace(microsecond=0)
        if middle.astimezone(tz).utcoffset() == low_offset:
            low = middle
        else:
            high = middle
    return high


def local_dates(window: Interval, tz: ZoneInfo) -> Iterable[date]:
    """Every local date that overlaps window (one day of margin on each side is cheap and safe)."""
    day = window.start.astimezone(tz).date() - timedelta(days=1)
    last = window.end.astimezone(tz).date() + timedelta(days=1)
    while day <= last:
        yield day
        day += timedelta(days=1)


def expand_weekly(
    spans: Sequence[WeeklySpan], window: Interval, tz: ZoneInfo, closed: frozenset[date] = frozenset()
) -> list[Interval]:
    """Weekly spans as UTC intervals overlapping window (unclipped), skipping closed days."""
    by_weekday: dict[int, list[WeeklySpan]] = {}
    for span in spans:
        by_weekday.setdefault(span.weekday, []).append(span)
    result: list[Interval] = []
    for day in local_dates(window, tz):
        if day in closed:
            continue
        for span in by_weekday.get(day.isoweekday(), ()):
            start, end = to_utc(day, span.start, tz), to_utc(day, span.end, tz)
            if end > start:
                interval = Interval(start, end)
                if interval.overlaps(window):
                    result.append(interval)
    result.sort()
    return result
