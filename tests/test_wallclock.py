"""Wall-clock rules -> UTC, exact on the daylight-saving days."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import numpy as np
import pytest

from otv_rules.wallclock import expand_weekly, local_days, to_utc, zone
from otv_sdk.models import UTC, Interval, WeeklySpan

BERLIN = zone("Europe/Berlin")


@pytest.mark.parametrize(
    ("day", "clock", "expected"),
    [
        # Spring: 02:00-03:00 does not exist on 2026-03-29; gap times resolve to the jump (01:00 UTC).
        (date(2026, 3, 29), time(1, 59), datetime(2026, 3, 29, 0, 59, tzinfo=UTC)),
        (date(2026, 3, 29), time(2, 0), datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
        (date(2026, 3, 29), time(2, 30), datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
        (date(2026, 3, 29), time(3, 0), datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
        (date(2026, 3, 29), time(8, 0), datetime(2026, 3, 29, 6, 0, tzinfo=UTC)),
        # Autumn: 02:00-03:00 happens twice on 2026-10-25; the first occurrence counts.
        (date(2026, 10, 25), time(2, 30), datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
        (date(2026, 10, 25), time(3, 0), datetime(2026, 10, 25, 2, 0, tzinfo=UTC)),
        (date(2026, 10, 25), time(8, 0), datetime(2026, 10, 25, 7, 0, tzinfo=UTC)),
    ],
)
def test_to_utc_on_switch_days(day: date, clock: time, expected: datetime) -> None:
    assert to_utc(day, clock, BERLIN) == expected


def test_spans_across_the_switch_last_their_real_length() -> None:
    spring = expand_weekly(
        [WeeklySpan(7, time(1), time(3))],
        Interval(datetime(2026, 3, 28, tzinfo=UTC), datetime(2026, 3, 30, tzinfo=UTC)),
        BERLIN,
    )
    assert [i.duration for i in spring.intervals()] == [timedelta(hours=1)]
    autumn = expand_weekly(
        [WeeklySpan(7, time(1), time(4))],
        Interval(datetime(2026, 10, 24, tzinfo=UTC), datetime(2026, 10, 26, tzinfo=UTC)),
        BERLIN,
    )
    assert [i.duration for i in autumn.intervals()] == [timedelta(hours=4)]


def test_a_span_in_the_repeated_hour_covers_both_occurrences() -> None:
    # 02:30-03:00 happens twice on 2026-10-25: 00:30-01:00 UTC (summer time) and 01:30-02:00 UTC.
    spans = expand_weekly(
        [WeeklySpan(7, time(2, 30), time(3, 0))],
        Interval(datetime(2026, 10, 24, tzinfo=UTC), datetime(2026, 10, 26, tzinfo=UTC)),
        BERLIN,
    )
    assert [(i.start.time(), i.end.time()) for i in spans.intervals()] == [
        (time(0, 30), time(1, 0)),
        (time(1, 30), time(2, 0)),
    ]


def test_a_span_ending_in_the_repeated_hour_includes_its_second_occurrence() -> None:
    # 01:00-02:30 local: 23:00-00:30 UTC, and again 02:00-02:30 (winter time) = 01:00-01:30 UTC.
    spans = expand_weekly(
        [WeeklySpan(7, time(1, 0), time(2, 30))],
        Interval(datetime(2026, 10, 24, tzinfo=UTC), datetime(2026, 10, 26, tzinfo=UTC)),
        BERLIN,
    )
    assert [i.duration for i in spans.intervals()] == [timedelta(hours=1, minutes=30), timedelta(minutes=30)]


def test_a_span_entirely_inside_the_gap_vanishes() -> None:
    spans = expand_weekly(
        [WeeklySpan(7, time(2, 0), time(2, 45))],
        Interval(datetime(2026, 3, 28, tzinfo=UTC), datetime(2026, 3, 30, tzinfo=UTC)),
        BERLIN,
    )
    assert len(spans) == 0


def test_other_zones_switch_on_their_own_dates() -> None:
    new_york = zone("America/New_York")
    # US spring-forward 2026 is on 8 March, when Berlin is still on winter time.
    assert to_utc(date(2026, 3, 9), time(8), new_york) == datetime(2026, 3, 9, 12, tzinfo=UTC)
    assert to_utc(date(2026, 3, 9), time(8), BERLIN) == datetime(2026, 3, 9, 7, tzinfo=UTC)
    # A zone without daylight saving.
    assert to_utc(date(2026, 7, 1), time(8), zone("Asia/Kolkata")) == datetime(2026, 7, 1, 2, 30, tzinfo=UTC)


def test_closed_days_are_skipped_and_week_is_complete() -> None:
    spans = [WeeklySpan(d, time(8), time(12)) for d in range(1, 6)]
    window = Interval(datetime(2026, 12, 21, tzinfo=UTC), datetime(2026, 12, 28, tzinfo=UTC))
    intervals = expand_weekly(spans, window, BERLIN, frozenset({date(2026, 12, 25)}))
    assert [i.start.astimezone(BERLIN).date().day for i in intervals.intervals()] == [21, 22, 23, 24]


def test_unknown_zone_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown IANA time zone"):
        zone("Europe/Atlantis")


# Zones whose clocks change at local midnight (checked with zoneinfo for 2026): the spring switch
# day then starts at 01:00, its first instant being the switch itself.
MIDNIGHT_SPRING = [
    ("America/Havana", date(2026, 3, 8), datetime(2026, 3, 8, 5, tzinfo=UTC), datetime(2026, 3, 8, 10, tzinfo=UTC)),
    ("America/Santiago", date(2026, 9, 6), datetime(2026, 9, 6, 4, tzinfo=UTC), datetime(2026, 9, 6, 9, tzinfo=UTC)),
    ("Atlantic/Azores", date(2026, 3, 29), datetime(2026, 3, 29, 1, tzinfo=UTC), datetime(2026, 3, 29, 6, tzinfo=UTC)),
    ("Africa/Cairo", date(2026, 4, 24), datetime(2026, 4, 23, 22, tzinfo=UTC), datetime(2026, 4, 24, 3, tzinfo=UTC)),
    ("Asia/Beirut", date(2026, 3, 29), datetime(2026, 3, 28, 22, tzinfo=UTC), datetime(2026, 3, 29, 3, tzinfo=UTC)),
]


@pytest.mark.parametrize(("name", "day", "first_instant", "six_oclock"), MIDNIGHT_SPRING)
def test_a_span_from_midnight_starts_with_a_day_that_begins_at_one(
    name: str, day: date, first_instant: datetime, six_oclock: datetime
) -> None:
    tz = zone(name)
    assert to_utc(day, time(0), tz) == first_instant  # 00:00 does not exist: the day starts at the switch
    spans = expand_weekly(
        [WeeklySpan(day.isoweekday(), time(0), time(6))],
        Interval(first_instant - timedelta(days=2), first_instant + timedelta(days=2)),
        tz,
    )
    # Only instants of that local date count: 01:00-06:00, five real hours; not the hour before.
    assert [(i.start, i.end) for i in spans.intervals()] == [(first_instant, six_oclock)]


@pytest.mark.parametrize(("name", "day", "first_instant", "six_oclock"), MIDNIGHT_SPRING)
def test_the_offset_changes_at_a_switch_at_local_midnight(
    name: str, day: date, first_instant: datetime, six_oclock: datetime
) -> None:
    # The offset that places the slot grid in local time: wrong until the next switch if this one is lost.
    days = local_days(name, day - timedelta(days=20), day + timedelta(days=20))
    switch = int(first_instant.timestamp())
    assert switch in days.transitions.tolist()
    instants = [switch - 1, switch, switch + 15 * 86400]
    expected = [datetime.fromtimestamp(s, zone(name)).utcoffset() for s in instants]
    assert [timedelta(seconds=o) for o in days.offset_at(np.array(instants)).tolist()] == expected


def test_a_day_that_loses_its_last_hour_ends_at_the_switch() -> None:
    # America/Nuuk, 2026-03-28: 23:00 jumps to 00:00 of the 29th (01:00 UTC), so the 28th has no 23:00.
    nuuk = zone("America/Nuuk")
    window = Interval(datetime(2026, 3, 26, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC))
    saturday = expand_weekly([WeeklySpan(6, time(22), time(23, 59))], window, nuuk)
    assert [(i.start, i.end) for i in saturday.intervals()] == [
        (datetime(2026, 3, 29, 0, tzinfo=UTC), datetime(2026, 3, 29, 1, tzinfo=UTC))
    ]
    sunday = expand_weekly([WeeklySpan(7, time(0), time(1))], window, nuuk)
    assert [(i.start, i.end) for i in sunday.intervals()] == [
        (datetime(2026, 3, 29, 1, tzinfo=UTC), datetime(2026, 3, 29, 2, tzinfo=UTC))
    ]


def test_midnight_autumn_switches_repeat_an_hour_of_the_right_day() -> None:
    # America/Havana, 2026-11-01: 01:00 goes back to 00:00, so the day's first hour happens twice.
    havana = zone("America/Havana")
    window = Interval(datetime(2026, 10, 30, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC))
    spans = expand_weekly([WeeklySpan(7, time(0), time(2))], window, havana)
    assert [(i.start, i.end) for i in spans.intervals()] == [
        (datetime(2026, 11, 1, 4, tzinfo=UTC), datetime(2026, 11, 1, 7, tzinfo=UTC))
    ]
    # America/Santiago, 2026-04-04: 24:00 goes back to 23:00, so Saturday's last hour happens twice.
    santiago = zone("America/Santiago")
    window = Interval(datetime(2026, 4, 2, tzinfo=UTC), datetime(2026, 4, 7, tzinfo=UTC))
    saturday = expand_weekly([WeeklySpan(6, time(23), time(23, 59))], window, santiago)
    assert [i.duration for i in saturday.intervals()] == [timedelta(minutes=59), timedelta(minutes=59)]
    sunday = expand_weekly([WeeklySpan(7, time(0), time(1))], window, santiago)
    assert [(i.start, i.end) for i in sunday.intervals()] == [
        (datetime(2026, 4, 5, 4, tzinfo=UTC), datetime(2026, 4, 5, 5, tzinfo=UTC))
    ]


def test_an_empty_override_is_a_day_off() -> None:
    spans = [WeeklySpan(d, time(8), time(12)) for d in range(1, 6)]
    window = Interval(datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 6, tzinfo=UTC))
    intervals = expand_weekly(spans, window, BERLIN, overrides={date(2026, 6, 2): [], date(2026, 6, 3): []})
    assert [i.start.astimezone(BERLIN).date().day for i in intervals.intervals()] == [1, 4, 5]
