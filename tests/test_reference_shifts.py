"""Shifts (Schichten) in the reference PVS: on every day of a shift the column works exactly its spans."""

from __future__ import annotations

from datetime import date, time, timedelta

from gateway.practice_reader import PracticeReader
from otv_rules.wallclock import to_utc, zone
from otv_sdk.models import Calendar, Column, ColumnKind, Interval, PracticeProfile, WeeklySpan
from otv_sdk.ports import Adapter, CallContext
from otv_sdk.reference import create_adapter
from otv_sdk.scenario import ClosedDay, Scenario, Shift

BERLIN = zone("Europe/Berlin")
CTX = CallContext(partner_id="test")
MONDAY = date(2027, 6, 7)
WEEKDAYS = [WeeklySpan(d, time(8), time(12)) for d in range(1, 6)]


async def _working_days(shifts: tuple[Shift, ...], closed: tuple[ClosedDay, ...] = ()) -> dict[date, list[str]]:
    """Local date -> 'HH:MM-HH:MM' worked in column a, over three weeks from MONDAY."""
    adapter: Adapter = create_adapter("p", {"demo": False, "sandbox": True})
    assert adapter.sandbox is not None
    scenario = Scenario(
        id="shifts",
        version="1",
        profile=PracticeProfile("Praxis", "Europe/Berlin"),
        calendar=Calendar(columns=(Column("a", "A", ColumnKind.PRACTITIONER, weekly_hours=tuple(WEEKDAYS)),)),
        shifts=shifts,
        closed_days=closed,
    )
    await adapter.sandbox.load_scenario(CTX, scenario)
    window = Interval(to_utc(MONDAY, time(0), BERLIN), to_utc(MONDAY + timedelta(days=21), time(0), BERLIN))
    assert adapter.calendar is not None
    (column,) = await PracticeReader(adapter.calendar).list_working_hours(CTX, window, ["a"])
    days: dict[date, list[str]] = {}
    for interval in column.intervals.intervals():
        start, end = interval.start.astimezone(BERLIN), interval.end.astimezone(BERLIN)
        days.setdefault(start.date(), []).append(f"{start:%H:%M}-{end:%H:%M}")
    return days


def _week(offset: int) -> list[date]:
    return [MONDAY + timedelta(days=7 * offset + d) for d in range(7)]


async def test_a_shift_without_spans_makes_its_days_days_off() -> None:
    week = _week(1)
    days = await _working_days((Shift("a", week[0], week[-1], ()),))
    assert sorted(days) == _week(0)[:5] + _week(2)[:5]


async def test_a_shift_works_exactly_its_spans_of_each_weekday_and_nothing_on_the_others() -> None:
    week = _week(1)
    # Monday afternoon and Saturday only: Tuesday-Friday of that week are days off, not weekly hours.
    shift = Shift("a", week[0], week[-1], (WeeklySpan(1, time(14), time(18)), WeeklySpan(6, time(9), time(11))))
    days = await _working_days((shift,))
    assert {d: days[d] for d in week if d in days} == {week[0]: ["14:00-18:00"], week[5]: ["09:00-11:00"]}
    assert all(days[d] == ["08:00-12:00"] for d in _week(0)[:5] + _week(2)[:5])


async def test_shifts_on_the_same_day_add_up_and_a_closed_day_stays_closed() -> None:
    week = _week(1)
    empty = Shift("a", week[0], week[-1], ())
    tuesday = Shift("a", week[1], week[1], (WeeklySpan(2, time(7), time(9)),))
    days = await _working_days((empty, tuesday), (ClosedDay(week[1] + timedelta(days=7), None),))
    assert {d: days[d] for d in week if d in days} == {week[1]: ["07:00-09:00"]}
    assert week[1] + timedelta(days=7) not in days


async def test_an_empty_shift_covers_only_its_own_days() -> None:
    week = _week(2)
    days = await _working_days((Shift("a", week[0], week[2], ()),))
    assert [d for d in week if d in days] == week[3:5]
