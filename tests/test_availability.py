"""One test per availability rule, on small calendars where the answer can be worked out by hand."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta

import pytest

from otv_rules.availability import AvailabilityEngine, OutsideHorizon, SlotPolicy
from otv_rules.wallclock import expand_weekly, to_utc, zone
from otv_sdk.errors import InvalidArgument
from otv_sdk.models import (
    UTC,
    AppointmentType,
    BookingArea,
    Calendar,
    Column,
    ColumnKind,
    Interval,
    WeeklySpan,
)
from otv_sdk.timeline import IntervalArray

BERLIN = "Europe/Berlin"
MONDAY = date(2027, 6, 7)  # a plain summer week, UTC+2
H = 3600


def at(day: date, clock: str, tz: str = BERLIN) -> int:
    return int(to_utc(day, time.fromisoformat(clock), zone(tz)).timestamp())


def kind(type_id: str = "t", minutes: int = 30, columns: Sequence[str] = ("a",), **extra: object) -> AppointmentType:
    return AppointmentType(type_id, type_id, timedelta(minutes=minutes), tuple(columns), **extra)  # type: ignore[arg-type]


def engine(
    *,
    hours: Sequence[tuple[int, str, str]] = ((1, "08:00", "12:00"),),
    columns: Sequence[str] = ("a",),
    types: Sequence[AppointmentType] = (),
    areas: Sequence[BookingArea] = (),
    blocked: dict[str, list[tuple[int, int]]] | None = None,
    predefined: dict[str, list[tuple[int, int]]] | None = None,
    grid: int = 15,
    now: int | None = None,
    tz: str = BERLIN,
    first: date = MONDAY,
) -> AvailabilityEngine:
    spans = [WeeklySpan(d, time.fromisoformat(a), time.fromisoformat(b)) for d, a, b in hours]
    lo = at(first - timedelta(days=7), "00:00", tz)
    hi = at(first + timedelta(days=21), "00:00", tz)
    window = Interval(datetime.fromtimestamp(lo, UTC), datetime.fromtimestamp(hi, UTC))
    working = {c: expand_weekly(spans, window, zone(tz)) for c in columns}
    return AvailabilityEngine(
        time_zone=tz,
        calendar=Calendar(
            columns=tuple(Column(c, c, ColumnKind.PRACTITIONER) for c in columns),
            appointment_types=tuple(types) or (kind(columns=columns),),
            booking_areas=tuple(areas),
        ),
        horizon=(lo, hi),
        working=working,
        blocked={c: IntervalArray.of(v) for c, v in (blocked or {}).items()},
        predefined_slots=None if predefined is None else {c: IntervalArray.of(v) for c, v in predefined.items()},
        policy=SlotPolicy(grid_minutes=grid),
        clock=lambda: float(lo if now is None else now),
    )


def day_window(day: date = MONDAY, tz: str = BERLIN) -> tuple[int, int]:
    return at(day, "00:00", tz), at(day + timedelta(days=1), "00:00", tz)


def starts(e: AvailabilityEngine, type_id: str = "t", day: date = MONDAY, **kw: object) -> list[str]:
    lo, hi = day_window(day, e.time_zone)
    tz = zone(e.time_zone)
    found = e.slots(type_id, lo, hi, **kw)  # type: ignore[arg-type]
    return [f"{c}@{datetime.fromtimestamp(s, tz):%H:%M}" for c, s, _ in found.triples()]


def test_slots_fill_working_hours_on_the_grid_and_never_cross_their_end() -> None:
    e = engine(types=[kind(minutes=60)], grid=30)
    assert starts(e) == ["a@08:00", "a@08:30", "a@09:00", "a@09:30", "a@10:00", "a@10:30", "a@11:00"]


def test_free_time_is_working_time_minus_busy_time() -> None:
    e = engine(blocked={"a": [(at(MONDAY, "09:00"), at(MONDAY, "09:30"))]})
    (free,) = e.free_time(*day_window())
    assert free.intervals.pairs() == [
        (at(MONDAY, "08:00"), at(MONDAY, "09:00")),
        (at(MONDAY, "09:30"), at(MONDAY, "12:00")),
    ]


def test_busy_time_and_overlapping_double_appointments_block_slots() -> None:
    busy = [(at(MONDAY, "08:30"), at(MONDAY, "09:30")), (at(MONDAY, "09:00"), at(MONDAY, "10:00"))]
    e = engine(types=[kind(minutes=30)], grid=30, blocked={"a": busy})
    assert starts(e) == ["a@08:00", "a@10:00", "a@10:30", "a@11:00", "a@11:30"]


def test_multi_day_absence_and_multi_column_reservation_block_every_day_they_cover() -> None:
    hours = [(d, "08:00", "12:00") for d in range(1, 6)]
    absence = (at(MONDAY, "00:00"), at(MONDAY + timedelta(days=3), "00:00"))  # Mon-Wed
    reservation = (at(MONDAY + timedelta(days=3), "10:00"), at(MONDAY + timedelta(days=4), "09:00"))
    e = engine(hours=hours, columns=("a", "b"), blocked={"a": [absence, reservation], "b": [reservation]})
    lo, hi = at(MONDAY, "00:00"), at(MONDAY + timedelta(days=5), "00:00")
    a, b = e.free_time(lo, hi)
    thursday, friday = MONDAY + timedelta(days=3), MONDAY + timedelta(days=4)
    expected = [(at(thursday, "08:00"), at(thursday, "10:00")), (at(friday, "09:00"), at(friday, "12:00"))]
    assert a.intervals.pairs() == expected
    mon_to_wed = [MONDAY + timedelta(days=d) for d in range(3)]
    assert b.intervals.pairs()[:3] == [(at(d, "08:00"), at(d, "12:00")) for d in mon_to_wed]
    assert b.intervals.pairs()[3:] == expected


def test_booking_area_admits_only_its_types_inside_and_others_may_use_the_rest() -> None:
    area = BookingArea("pain", "pain", None, frozenset({"pain"}), (WeeklySpan(1, time(8), time(9)),))
    types = [kind("pain", 30), kind("check", 30)]
    e = engine(types=types, areas=[area], grid=30)
    assert starts(e, "pain") == [
        f"a@{h}" for h in ("08:00", "08:30", "09:00", "09:30", "10:00", "10:30", "11:00", "11:30")
    ]
    assert starts(e, "check") == [f"a@{h}" for h in ("09:00", "09:30", "10:00", "10:30", "11:00", "11:30")]


def test_booking_area_of_one_column_leaves_other_columns_alone() -> None:
    area = BookingArea("pain", "pain", "a", frozenset({"pain"}), (WeeklySpan(1, time(8), time(11)),))
    types = [kind("pain", 60, ("a", "b")), kind("check", 60, ("a", "b"))]
    e = engine(columns=("a", "b"), types=types, areas=[area], grid=60)
    assert starts(e, "check") == ["b@08:00", "b@09:00", "b@10:00", "a@11:00", "b@11:00"]
    assert starts(e, "pain") == ["a@08:00", "b@08:00", "a@09:00", "b@09:00", "a@10:00", "b@10:00", "a@11:00", "b@11:00"]


def test_booking_area_validity_dates() -> None:
    area = BookingArea(
        "pain",
        "pain",
        None,
        frozenset({"pain"}),
        (WeeklySpan(1, time(8), time(12)),),
        valid_from=MONDAY + timedelta(days=7),
    )
    e = engine(types=[kind("check", 60), kind("pain", 60)], areas=[area], grid=60)
    assert starts(e, "check") == ["a@08:00", "a@09:00", "a@10:00", "a@11:00"]
    assert starts(e, "check", day=MONDAY + timedelta(days=7)) == []


def test_buffer_must_be_free_after_the_appointment() -> None:
    busy = [(at(MONDAY, "10:00"), at(MONDAY, "11:00"))]
    e = engine(types=[kind(minutes=30, buffer=timedelta(minutes=15))], grid=15, blocked={"a": busy})
    assert starts(e)[-1:] == ["a@11:15"]
    assert "a@09:15" in starts(e)
    assert "a@09:30" not in starts(e)  # 09:30-10:00 fits, but the buffer would run into 10:00


def test_lead_time_and_horizon_bound_the_offer() -> None:
    now = at(MONDAY, "08:50")
    e = engine(types=[kind(minutes=30, min_lead=timedelta(hours=1))], grid=30, now=now)
    assert starts(e)[0] == "a@10:00"
    far = engine(types=[kind(minutes=30, max_horizon=timedelta(days=7))], grid=60, now=at(MONDAY, "09:00"))
    assert starts(far, day=MONDAY + timedelta(days=7)) == ["a@08:00", "a@09:00"]


def test_valid_holds_block_and_expired_holds_do_not() -> None:
    now = at(MONDAY, "07:00")
    e = engine(types=[kind(minutes=60)], grid=60, now=now)
    e.add_hold("valid", "a", at(MONDAY, "08:00"), at(MONDAY, "09:00"), expire=now + 900)
    e.add_hold("expired", "a", at(MONDAY, "10:00"), at(MONDAY, "11:00"), expire=now - 1)
    assert starts(e) == ["a@09:00", "a@10:00", "a@11:00"]
    (free,) = e.free_time(*day_window())
    assert free.intervals.pairs()[0] == (at(MONDAY, "09:00"), at(MONDAY, "12:00"))
    e.remove_hold("valid")
    assert starts(e)[0] == "a@08:00"


def test_predefined_slots_offer_only_the_pvs_slots_that_are_free_and_online() -> None:
    # The PVS has 30-minute slots 07:00-13:00; 09:00 was deleted by the practice, 10:00 is booked.
    pvs = [
        (at(MONDAY, f"{h:02d}:{m:02d}"), at(MONDAY, f"{h:02d}:{m:02d}") + 1800) for h in range(7, 13) for m in (0, 30)
    ]
    pvs = [p for p in pvs if p[0] != at(MONDAY, "09:00")]
    e = engine(
        types=[kind(minutes=30)],
        grid=5,
        predefined={"a": pvs},
        blocked={"a": [(at(MONDAY, "10:00"), at(MONDAY, "10:30"))]},
    )
    assert starts(e) == [f"a@{h}" for h in ("08:00", "08:30", "09:30", "10:30", "11:00", "11:30")]


def test_grid_is_local_wall_clock_time() -> None:
    kolkata = "Asia/Kolkata"  # UTC+05:30: a UTC-aligned hourly grid would land on :30
    e = engine(types=[kind(minutes=60)], grid=60, tz=kolkata)
    assert starts(e) == ["a@08:00", "a@09:00", "a@10:00", "a@11:00"]


def test_spring_switch_day_has_no_missing_or_invented_hour() -> None:
    sunday = date(2027, 3, 28)
    e = engine(hours=[(7, "00:00", "06:00")], types=[kind(minutes=60)], grid=60, first=sunday)
    (free,) = e.free_time(*day_window(sunday))
    assert free.intervals.total() == 5 * H  # 02:00-03:00 does not exist
    assert starts(e, day=sunday) == ["a@00:00", "a@01:00", "a@03:00", "a@04:00", "a@05:00"]


def test_autumn_switch_day_counts_the_repeated_hour_twice() -> None:
    sunday = date(2027, 10, 31)
    e = engine(hours=[(7, "00:00", "06:00")], types=[kind(minutes=60)], grid=60, first=sunday)
    (free,) = e.free_time(*day_window(sunday))
    assert free.intervals.total() == 7 * H
    assert starts(e, day=sunday) == ["a@00:00", "a@01:00", "a@02:00", "a@02:00", "a@03:00", "a@04:00", "a@05:00"]


@pytest.mark.parametrize("tz", [BERLIN, "America/Havana", "Atlantic/Azores", "America/Santiago", "Asia/Kolkata"])
def test_a_grid_that_does_not_divide_an_hour_counts_from_local_midnight(tz: str) -> None:
    # 45 minutes divides a day but not an hour: 07:30, 08:15, 09:00, ... whatever the UTC offset, and
    # also in the weeks after a switch at local midnight (Havana 8 March, Azores 29 March 2026).
    monday = date(2026, 3, 9) if tz == "America/Havana" else date(2026, 3, 30)
    e = engine(types=[kind(minutes=30)], grid=45, tz=tz, first=monday)
    for day in (monday, monday + timedelta(days=7), monday + timedelta(days=14)):
        assert starts(e, day=day) == ["a@08:15", "a@09:00", "a@09:45", "a@10:30", "a@11:15"], day


def test_a_switch_at_local_midnight_neither_invents_nor_loses_an_hour() -> None:
    havana = "America/Havana"  # 2026-03-08 starts at 01:00 (00:00 does not exist); 2026-11-01 repeats 00:00-01:00
    spring, autumn = date(2026, 3, 8), date(2026, 11, 1)
    e = engine(hours=[(7, "00:00", "06:00")], types=[kind(minutes=60)], grid=60, tz=havana, first=spring)
    saturday_to_monday = (
        at(spring - timedelta(days=1), "00:00", havana),
        at(spring + timedelta(days=1), "00:00", havana),
    )
    (free,) = e.free_time(*saturday_to_monday)
    assert free.intervals.pairs() == [(at(spring, "01:00", havana), at(spring, "06:00", havana))]
    assert starts(e, day=spring) == ["a@01:00", "a@02:00", "a@03:00", "a@04:00", "a@05:00"]
    e = engine(hours=[(7, "00:00", "06:00")], types=[kind(minutes=60)], grid=60, tz=havana, first=autumn)
    (free,) = e.free_time(*day_window(autumn, havana))
    assert free.intervals.total() == 7 * H
    assert starts(e, day=autumn) == ["a@00:00", "a@00:00", "a@01:00", "a@02:00", "a@03:00", "a@04:00", "a@05:00"]


def test_next_available_takes_the_earliest_across_columns_in_column_order() -> None:
    busy = {"a": [(at(MONDAY, "08:00"), at(MONDAY, "09:00"))]}
    e = engine(columns=("a", "b"), types=[kind(minutes=60, columns=("a", "b"))], grid=60, blocked=busy)
    lo, hi = day_window()
    first = e.slots("t", lo, hi, limit=3).triples()
    assert [(c, datetime.fromtimestamp(s, zone(BERLIN)).hour) for c, s, _ in first] == [("b", 8), ("a", 9), ("b", 9)]


def test_pages_continue_exactly_where_the_last_one_ended() -> None:
    e = engine(columns=("a", "b"), types=[kind(minutes=15, columns=("a", "b"))], grid=15)
    lo, hi = day_window()
    everything = e.slots("t", lo, hi).triples()
    collected: list[tuple[str, int, int]] = []
    after = None
    while True:
        page = e.slots("t", lo, hi, limit=5, after=after).triples()
        if not page:
            break
        collected += page
        after = (page[-1][1], ("a", "b").index(page[-1][0]))
    assert collected == everything
    assert len(everything) == 2 * 16


def test_unknown_type_or_column_names_the_field() -> None:
    e = engine(columns=("a", "b"), types=[kind(columns=("a",))])
    lo, hi = day_window()
    with pytest.raises(InvalidArgument) as caught:
        e.slots("nope", lo, hi)
    assert [v.field for v in caught.value.violations] == ["appointment_type"]
    with pytest.raises(InvalidArgument) as caught:
        e.slots("t", lo, hi, ["a", "b"])
    assert [v.field for v in caught.value.violations] == ["columns[1]"]
    with pytest.raises(InvalidArgument) as caught:
        e.free_time(lo, hi, ["zz"])
    assert [v.field for v in caught.value.violations] == ["columns[0]"]


def test_queries_outside_the_horizon_are_refused() -> None:
    e = engine()
    with pytest.raises(OutsideHorizon):
        e.free_time(e.horizon[0] - 1, e.horizon[1])


def test_booking_and_cancelling_update_free_time_in_place() -> None:
    e = engine(types=[kind(minutes=60)], grid=60)
    e.add_busy("a", at(MONDAY, "09:00"), at(MONDAY, "10:00"))
    assert starts(e) == ["a@08:00", "a@10:00", "a@11:00"]
    e.add_busy("a", at(MONDAY, "09:30"), at(MONDAY, "10:30"))  # a double appointment
    e.remove_busy("a", at(MONDAY, "09:00"), at(MONDAY, "10:00"))
    assert starts(e) == ["a@08:00", "a@11:00"]
    e.remove_busy("a", at(MONDAY, "09:30"), at(MONDAY, "10:30"))
    assert starts(e) == ["a@08:00", "a@09:00", "a@10:00", "a@11:00"]
    with pytest.raises(KeyError):
        e.remove_busy("a", at(MONDAY, "09:30"), at(MONDAY, "10:30"))


def test_next_available_considers_a_column_whose_first_slot_is_just_before_the_cutoff() -> None:
    # a: 08:00, then 09:30, 09:35, ...; b: first free at 09:30. The third slot is b@09:30 (a tie
    # with a@09:30, which comes first), not a@09:35: b must not be skipped.
    busy = {"a": [(at(MONDAY, "09:00"), at(MONDAY, "09:30"))], "b": [(at(MONDAY, "08:00"), at(MONDAY, "09:30"))]}
    e = engine(columns=("a", "b"), types=[kind(minutes=60, columns=("a", "b"))], grid=5, blocked=busy)
    lo, hi = day_window()
    top = [
        (c, datetime.fromtimestamp(s, zone(BERLIN)).strftime("%H:%M"))
        for c, s, _ in e.slots("t", lo, hi, limit=3).triples()
    ]
    assert top == [("a", "08:00"), ("a", "09:30"), ("b", "09:30")]
