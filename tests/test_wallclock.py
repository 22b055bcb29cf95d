"""Wall-clock rules -> UTC, exact on the daylight-saving days."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest

from otv_sdk.models import UTC, Interval, WeeklySpan
from otv_sdk.wallclock import expand_weekly, to_utc, zone

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
