"""Packing, month arithmetic and resource names: the wire mapping's building blocks."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otv_sdk import conversion as cv
from otv_sdk.errors import InvalidArgument
from otv_sdk.models import UTC, ColumnIntervals
from otv_sdk.resources import parse_child, parse_practice
from otv_sdk.timeline import IntervalArray, from_datetime
from otv_sdk.timewindow import add_months, window_too_long

ORIGIN = datetime(2027, 1, 1, tzinfo=UTC)

ORIGIN_SECONDS = from_datetime(ORIGIN)
pairs = st.lists(
    st.tuples(st.integers(0, 2 * 366 * 86400), st.integers(1, 3 * 86400)).map(
        lambda t: (ORIGIN_SECONDS + t[0], ORIGIN_SECONDS + t[0] + t[1])
    ),
    max_size=200,
)


@given(pairs)
def test_packing_round_trips_any_possibly_overlapping_intervals(items: list[tuple[int, int]]) -> None:
    packed = cv.pack_intervals("demo", ORIGIN, ColumnIntervals("berg", IntervalArray.of(items)))
    assert len(packed.start_deltas) == len(packed.durations) == len(items)
    unpacked = cv.unpack_intervals(packed, "demo", "busy_times[0]")
    assert unpacked.column_id == "berg"
    assert unpacked.intervals.pairs() == sorted(items)


def test_packing_is_compact() -> None:
    # A year of 30-minute appointments every hour on weekdays: about 2 bytes per number.
    items = [
        (ORIGIN_SECONDS + d * 86400 + h * 3600, ORIGIN_SECONDS + d * 86400 + h * 3600 + 1800)
        for d in range(365)
        for h in range(8, 17)
    ]
    packed = cv.pack_intervals("demo", ORIGIN, ColumnIntervals("berg", IntervalArray.of(items)))
    assert packed.ByteSize() < 5 * len(items)


def test_unpacking_rejects_mismatched_arrays() -> None:
    packed = cv.pack_intervals("demo", ORIGIN, ColumnIntervals("berg", IntervalArray.of()))
    packed.start_deltas.append(5)
    with pytest.raises(InvalidArgument, match="differ in length"):
        cv.unpack_intervals(packed, "demo", "busy_times[0]")


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (datetime(2027, 1, 31, 10, tzinfo=UTC), 1, datetime(2027, 2, 28, 10, tzinfo=UTC)),
        (datetime(2028, 1, 31, tzinfo=UTC), 1, datetime(2028, 2, 29, tzinfo=UTC)),
        (datetime(2028, 2, 29, tzinfo=UTC), 24, datetime(2030, 2, 28, tzinfo=UTC)),
        (datetime(2027, 11, 15, tzinfo=UTC), 24, datetime(2029, 11, 15, tzinfo=UTC)),
        (datetime(2027, 12, 1, tzinfo=UTC), 1, datetime(2028, 1, 1, tzinfo=UTC)),
    ],
)
def test_add_months(start: datetime, months: int, expected: datetime) -> None:
    assert add_months(start, months) == expected


def test_window_limit_is_exactly_24_calendar_months() -> None:
    start = datetime(2027, 3, 22, 7, tzinfo=UTC)
    assert not window_too_long(start, datetime(2029, 3, 22, 7, tzinfo=UTC))
    assert window_too_long(start, datetime(2029, 3, 22, 7, 0, 1, tzinfo=UTC))


@pytest.mark.parametrize("name", ["practices/a", "practices/praxis-nord-7", "practices/" + "a" * 63])
def test_valid_practice_names(name: str) -> None:
    assert parse_practice(name, "parent") == name.split("/")[1]


@pytest.mark.parametrize(
    "name", ["practices/", "practices/a-", "practices/A", "practices/" + "a" * 64, "practices/a/b", "x/a"]
)
def test_invalid_practice_names_name_the_field(name: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_practice(name, "parent")
    assert [v.field for v in caught.value.violations] == ["parent"]


def test_child_ids_allow_pvs_key_formats_but_not_slashes() -> None:
    assert parse_child("practices/demo/patients/P.00042_a~b", "patient", "patients").id == "P.00042_a~b"
    with pytest.raises(InvalidArgument):
        parse_child("practices/demo/patients/a b", "patient", "patients")
