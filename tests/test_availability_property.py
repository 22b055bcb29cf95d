"""The engine agrees exactly with the per-minute reference on random calendars, DST days included."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import grpc
import pytest
from availability_reference import AreaSpec, ColumnSpec, Scenario, ShiftSpec, TypeSpec, free_minutes, slots
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.practice_reader import PracticeReader
from otv_rules.availability import AvailabilityEngine, SlotPolicy
from otv_sdk.adapter_server import serve_adapters
from otv_sdk.models import (
    UTC,
    AppointmentType,
    BookingArea,
    Calendar,
    Column,
    ColumnIntervals,
    ColumnKind,
    Interval,
    PracticeProfile,
    WeeklySpan,
)
from otv_sdk.ports import CallContext
from otv_sdk.practice_data_client import PracticeDataClient, RemoteCalendarData
from otv_sdk.reference import create_adapter
from otv_sdk.scenario import ClosedDay, Shift
from otv_sdk.scenario import Scenario as ScenarioPractice
from otv_sdk.timeline import IntervalArray

# Switch days to test, both directions (checked with zoneinfo): zones with a one-hour switch at night
# (two hemispheres), a 30-minute switch, none, and switches at local midnight. Havana and the Azores
# start their spring day at 01:00 and repeat its 00:00-01:00 in autumn; Santiago and Cairo start
# their spring day at 01:00 and repeat the previous day's 23:00-24:00; Nuuk loses the previous day's
# 23:00-24:00 and repeats it.
ZONES = {
    "Europe/Berlin": [date(2026, 3, 29), date(2026, 10, 25), date(2027, 3, 28)],
    "America/New_York": [date(2026, 3, 8), date(2026, 11, 1)],
    "Australia/Lord_Howe": [date(2026, 4, 5), date(2026, 10, 4)],
    "Asia/Kolkata": [date(2026, 6, 1)],
    "America/Havana": [date(2026, 3, 8), date(2026, 11, 1)],
    "Atlantic/Azores": [date(2026, 3, 29), date(2026, 10, 25)],
    "America/Santiago": [date(2026, 4, 5), date(2026, 9, 6)],
    "Africa/Cairo": [date(2026, 4, 24), date(2026, 10, 30)],
    "America/Nuuk": [date(2026, 3, 29), date(2026, 10, 25)],
}
MIDNIGHT_ZONES = ["America/Havana", "Atlantic/Azores", "America/Santiago", "Africa/Cairo", "America/Nuuk"]
# Grids divide a day (SlotPolicy); most of those tested do not divide an hour (8, 9, 16, ... 45, ... 720).
GRIDS = [5, 10, 15, 20, 30, 60] + [g for g in range(1, 181) if (24 * 60) % g == 0 and 60 % g] + [480, 720]
DAY = 86400
CTX = CallContext(partner_id="property-test")


@st.composite
def spans(draw: st.DrawFn, step: int = 15) -> list[tuple[int, int]]:
    """0-2 wall-clock spans in a day, night hours included so the DST gap and overlap matter.

    Often from midnight or to the end of the day, where switches at local midnight fall."""
    result = []
    for _ in range(draw(st.integers(0, 2))):
        a = 0 if draw(st.integers(0, 2)) == 0 else draw(st.integers(0, 24 * 60 // step - 1)) * step
        b = 24 * 60 if draw(st.integers(0, 3)) == 0 else draw(st.integers(a // step + 1, 24 * 60 // step)) * step
        result.append((a, min(b, 24 * 60 - 1)))
    return [(a, b) for a, b in result if b > a]


@st.composite
def shifts(draw: st.DrawFn, days: list[date]) -> ShiftSpec:
    """A shift of 1-4 days: spans on some weekdays (0-2 each), or none at all (all days off)."""
    valid_from = draw(st.sampled_from(days))
    valid_until = valid_from + timedelta(days=draw(st.integers(0, 3)))
    weekly = {} if draw(st.integers(0, 3)) == 0 else {weekday: draw(spans()) for weekday in range(1, 8)}
    return ShiftSpec(valid_from, valid_until, weekly)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    tz_name = draw(st.sampled_from(sorted(ZONES)))
    tz = ZoneInfo(tz_name)
    base = draw(st.sampled_from(ZONES[tz_name]))
    # Mostly the switch day and the day before it; sometimes days after it (the offset has changed).
    start_day = base + timedelta(days=draw(st.sampled_from([-1, -1, 0, 0, 3])))
    lo = int(datetime.combine(start_day, time(0), tz).astimezone(UTC).timestamp())
    hi = lo + draw(st.integers(1, 3)) * DAY
    days = [start_day + timedelta(days=i) for i in range(-1, 5)]

    def instants(max_len_minutes: int) -> list[tuple[int, int]]:
        items = []
        for _ in range(draw(st.integers(0, 5))):
            s = lo + draw(st.integers(-120, (hi - lo) // 60)) * 60
            items.append((s, s + draw(st.integers(5, max_len_minutes)) * 60))
        return items

    column_ids = ["a", "b", "c"][: draw(st.integers(1, 3))]
    slot_mode = draw(st.booleans())
    columns = []
    for column_id in column_ids:
        predefined = None
        if slot_mode:
            predefined = []
            for _ in range(draw(st.integers(0, 12))):
                s = lo + draw(st.integers(0, (hi - lo) // 900)) * 900
                predefined.append((s, s + draw(st.sampled_from([15, 30, 45])) * 60))
        columns.append(
            ColumnSpec(
                id=column_id,
                weekly={weekday: draw(spans()) for weekday in range(1, 8)},
                closed={d for d in days if draw(st.integers(0, 6)) == 0},
                shifts=draw(st.lists(shifts(days), max_size=2)),
                blocked=instants(600) + instants(3000),
                predefined=predefined,
            )
        )
    types = [
        TypeSpec(
            id=f"t{i}",
            duration=draw(st.sampled_from([5, 10, 15, 20, 30, 45, 60, 90])),
            buffer=draw(st.sampled_from([0, 0, 5, 10])),
            lead=draw(st.sampled_from([0, 0, 30, 240])),
            horizon_days=draw(st.sampled_from([None, None, 1, 2])),
            columns=draw(st.lists(st.sampled_from(column_ids), min_size=1, unique=True)),
        )
        for i in range(draw(st.integers(1, 3)))
    ]
    areas = [
        AreaSpec(
            id=f"area{i}",
            column=draw(st.sampled_from([None, *column_ids])),
            types=set(draw(st.lists(st.sampled_from([t.id for t in types]), unique=True))),
            weekly={weekday: draw(spans(step=30)) for weekday in range(1, 8)},
            valid_from=draw(st.sampled_from([None, days[1], days[2]])),
            valid_until=draw(st.sampled_from([None, days[2], days[3]])),
        )
        for i in range(draw(st.integers(0, 2)))
    ]
    now = lo + draw(st.integers(-DAY // 60, (hi - lo) // 60)) * 60
    holds = []
    for i in range(draw(st.integers(0, 3))):
        s = lo + draw(st.integers(0, (hi - lo) // 60)) * 60
        expire = now + draw(st.sampled_from([-600, 600]))
        holds.append((draw(st.sampled_from(column_ids)), s, s + draw(st.integers(5, 120)) * 60, expire + i))
    return Scenario(
        tz=tz_name,
        lo=lo,
        hi=hi,
        now=now,
        grid=draw(st.sampled_from(GRIDS)),
        horizon_days=draw(st.sampled_from([2, 5])),
        columns=columns,
        areas=areas,
        types=types,
        holds=holds,
    )


@st.composite
def switch_days(draw: st.DrawFn) -> Scenario:
    """A plain practice around one switch: dense hours (often whole days), nothing busy, one type.

    Every wall-clock mistake shows here: the three days around the switch, or days after a switch
    that the engine's horizon reaches back to, on any grid."""
    tz_name = draw(st.sampled_from(["Europe/Berlin", *MIDNIGHT_ZONES]))
    base = draw(st.sampled_from(ZONES[tz_name]))
    start_day = base + timedelta(days=draw(st.sampled_from([-1, -1, 2])))
    lo = int(datetime.combine(start_day, time(0), ZoneInfo(tz_name)).astimezone(UTC).timestamp())
    whole_day = [(0, 24 * 60 - 1)]
    weekly = {weekday: whole_day if draw(st.booleans()) else draw(spans()) for weekday in range(1, 8)}
    kind = TypeSpec("t", draw(st.sampled_from([5, 15, 30, 60])), 0, 0, None, ["a"])
    return Scenario(
        tz=tz_name,
        lo=lo,
        hi=lo + 3 * DAY,
        now=lo - DAY,
        grid=draw(st.sampled_from(GRIDS)),
        horizon_days=5,
        columns=[ColumnSpec("a", weekly)],
        areas=[],
        types=[kind],
        holds=[],
    )


def _weekly(weekly: dict[int, list[tuple[int, int]]]) -> list[WeeklySpan]:
    return [
        WeeklySpan(weekday, time(a // 60, a % 60), time(b // 60, b % 60))
        for weekday, items in weekly.items()
        for a, b in items
    ]


def working_time(scenario: Scenario, horizon: Interval, transport: str = "in_process") -> dict[str, IntervalArray]:
    """Working time as the gateway computes it from what the reference PVS serves: weekly hours,
    shifts and closed days stored in its SQLite database (through the sandbox port), read as raw
    rules in-process or over PracticeDataService, and turned into intervals by `PracticeReader`."""
    adapter = create_adapter("p", {"demo": False, "sandbox": True, "time_zone": scenario.tz})
    sandbox, data = adapter.sandbox, adapter.calendar
    assert sandbox is not None
    assert data is not None
    practice = ScenarioPractice(
        id="property",
        version="1",
        profile=PracticeProfile("property", scenario.tz),
        calendar=Calendar(
            columns=tuple(
                Column(c.id, c.id, ColumnKind.PRACTITIONER, weekly_hours=tuple(_weekly(c.weekly)))
                for c in scenario.columns
            )
        ),
        shifts=tuple(
            Shift(c.id, s.valid_from, s.valid_until, tuple(_weekly(s.weekly)))
            for c in scenario.columns
            for s in c.shifts
        ),
        closed_days=tuple(ClosedDay(d, c.id) for c in scenario.columns for d in sorted(c.closed)),
    )

    async def read() -> list[ColumnIntervals]:
        await sandbox.load_scenario(CTX, practice)
        columns = [c.id for c in scenario.columns]
        if transport == "in_process":
            try:
                return await PracticeReader(data).list_working_hours(CTX, horizon, columns)
            finally:
                await adapter.aclose()
        server = await serve_adapters({"p": adapter})  # closes the adapter when it stops
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                remote = RemoteCalendarData(PracticeDataClient(channel, "p"))
                return await PracticeReader(remote).list_working_hours(CTX, horizon, columns)
        finally:
            await server.stop(0)

    return {c.column_id: c.intervals for c in asyncio.run(read())}


def build_engine(scenario: Scenario, transport: str = "in_process") -> AvailabilityEngine:
    horizon = (scenario.lo - scenario.horizon_days * DAY, scenario.hi + 2 * DAY)
    span = Interval(datetime.fromtimestamp(horizon[0], UTC), datetime.fromtimestamp(horizon[1], UTC))
    calendar = Calendar(
        columns=tuple(Column(c.id, c.id, ColumnKind.PRACTITIONER) for c in scenario.columns),
        appointment_types=tuple(
            AppointmentType(
                id=t.id,
                display_name=t.id,
                duration=timedelta(minutes=t.duration),
                column_ids=tuple(t.columns),
                buffer=timedelta(minutes=t.buffer),
                min_lead=timedelta(minutes=t.lead),
                max_horizon=None if t.horizon_days is None else timedelta(days=t.horizon_days),
            )
            for t in scenario.types
        ),
        booking_areas=tuple(
            BookingArea(
                id=a.id,
                display_name=a.id,
                column_id=a.column,
                appointment_type_ids=frozenset(a.types),
                weekly_spans=tuple(_weekly(a.weekly)),
                valid_from=a.valid_from,
                valid_until=a.valid_until,
            )
            for a in scenario.areas
        ),
    )
    working = working_time(scenario, span, transport)
    blocked = {c.id: IntervalArray.of(c.blocked) for c in scenario.columns}
    predefined = None
    if any(c.predefined is not None for c in scenario.columns):
        predefined = {c.id: IntervalArray.of(c.predefined or []) for c in scenario.columns}
    engine = AvailabilityEngine(
        time_zone=scenario.tz,
        calendar=calendar,
        horizon=horizon,
        working=working,
        blocked=blocked,
        predefined_slots=predefined,
        policy=SlotPolicy(grid_minutes=scenario.grid),
        clock=lambda: float(scenario.now),
    )
    for index, (column, start, end, expire) in enumerate(scenario.holds):
        engine.add_hold(f"h{index}", column, start, end, expire)
    return engine


def engine_minutes(engine: AvailabilityEngine, scenario: Scenario) -> dict[str, set[int]]:
    return {
        c.column_id: {m for s, e in c.intervals.pairs() for m in range(s, e, 60)}
        for c in engine.free_time(scenario.lo, scenario.hi)
    }


def engine_slots(engine: AvailabilityEngine, scenario: Scenario, type_id: str) -> set[tuple[str, int]]:
    return {(c, s) for c, s, _ in engine.slots(type_id, scenario.lo, scenario.hi).triples()}


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
THOROUGH = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_against_reference(scenario: Scenario, transport: str = "in_process") -> None:
    engine = build_engine(scenario, transport)
    expected = {c.id: free_minutes(scenario, c, scenario.lo, scenario.hi) for c in scenario.columns}
    assert engine_minutes(engine, scenario) == expected
    for kind in scenario.types:
        assert engine_slots(engine, scenario, kind.id) == slots(scenario, kind.id), kind


@SETTINGS
@given(scenarios())
def test_free_time_and_slots_match_the_reference(scenario: Scenario) -> None:
    check_against_reference(scenario)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_a_remote_practice_gets_the_same_answers(scenario: Scenario) -> None:
    """The PVS's rules reach the gateway over PracticeDataService; the answers are still exact."""
    check_against_reference(scenario, "remote")


@pytest.mark.slow
@THOROUGH
@given(scenarios())
def test_free_time_and_slots_match_the_reference_thoroughly(scenario: Scenario) -> None:
    check_against_reference(scenario)


@settings(max_examples=40, deadline=None)
@given(switch_days())
def test_switch_days_match_the_reference_on_any_grid(scenario: Scenario) -> None:
    check_against_reference(scenario)


@SETTINGS
@given(scenarios(), st.data())
def test_incremental_changes_match_a_fresh_computation(scenario: Scenario, data: st.DataObject) -> None:
    engine = build_engine(scenario)
    for _ in range(data.draw(st.integers(1, 6))):
        column = data.draw(st.sampled_from(scenario.columns))
        if column.blocked and data.draw(st.booleans()):
            start, end = data.draw(st.sampled_from(column.blocked))
            column.blocked.remove((start, end))
            engine.remove_busy(column.id, start, end)
        else:
            start = scenario.lo + data.draw(st.integers(0, (scenario.hi - scenario.lo) // 60)) * 60
            end = start + data.draw(st.integers(5, 240)) * 60
            column.blocked.append((start, end))
            engine.add_busy(column.id, start, end)
    expected = {c.id: free_minutes(scenario, c, scenario.lo, scenario.hi) for c in scenario.columns}
    assert engine_minutes(engine, scenario) == expected
    for kind in scenario.types:
        assert engine_slots(engine, scenario, kind.id) == slots(scenario, kind.id), kind


@SETTINGS
@given(scenarios(), st.integers(1, 12))
def test_pages_of_any_size_concatenate_to_the_whole_answer(scenario: Scenario, size: int) -> None:
    engine = build_engine(scenario)
    for kind in scenario.types:
        whole = engine.slots(kind.id, scenario.lo, scenario.hi).triples()
        collected: list[tuple[str, int, int]] = []
        after = None
        while True:
            page = engine.slots(kind.id, scenario.lo, scenario.hi, limit=size, after=after).triples()
            collected += page
            if len(page) < size:
                break
            after = (page[-1][1], engine.calendar.column_ids().index(page[-1][0]))
        assert collected == whole
