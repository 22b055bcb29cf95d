"""Reader: the calendar as the PVS has it, exactly, and free time and slots computed from it."""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta

from otv_conformance.cases import Group, case, check
from otv_conformance.expectations import (
    Spans,
    expected_absences,
    expected_busy,
    expected_free,
    expected_slot_starts,
    expected_working,
    in_foreign_area,
    normalize,
    seconds,
    subtract,
)
from otv_conformance.session import Session
from otv_sdk.errors import InvalidArgument
from otv_sdk.models import Capability, Interval, WeeklySpan

R = Group.READER


def _show(spans: Spans, session: Session, limit: int = 4) -> str:
    tz = session.placed.tz

    def one(s: int, e: int) -> str:
        start, end = datetime.fromtimestamp(s, tz), datetime.fromtimestamp(e, tz)
        # A span ending on another day shows its end date too, so multi-day spans never read alike.
        until = f"{end:%H:%M}" if end.date() == start.date() else f"{end:%Y-%m-%d %H:%M}"
        return f"{start:%Y-%m-%d %H:%M}-{until}"

    text = ", ".join(one(s, e) for s, e in spans[:limit])
    return text + (f" (+{len(spans) - limit} more)" if len(spans) > limit else "") if spans else "nothing"


def _compare(what: str, column: str, got: Spans, want: Spans, session: Session) -> None:
    missing, extra = subtract(want, got), subtract(got, want)
    check(
        not missing and not extra,
        f"{what} of column {column}: missing {_show(missing, session)}; unexpected {_show(extra, session)}",
    )


def _columns(session: Session) -> list[str]:
    return [c.id for c in session.placed.scenario.calendar.columns]


@case("reader.practice.profile", "RD-1", R)
async def practice_profile(session: Session) -> None:
    """GetPractice returns the scenario's name and time zone and declares the reader and sandbox."""
    practice = await session.a.get_practice(session.practice_id)
    profile = session.placed.scenario.profile
    check(
        practice.display_name == profile.display_name,
        f"display name {practice.display_name!r}, expected {profile.display_name!r}",
    )
    check(practice.time_zone == profile.time_zone, f"time zone {practice.time_zone!r}, expected {profile.time_zone!r}")
    check(Capability.READER in practice.capabilities, "the reader capability is not declared")
    check(
        bool(practice.adapter.vendor and practice.adapter.product and practice.adapter.version),
        "adapter identity incomplete",
    )


@case("reader.calendars.columns", "RD-2", R)
async def calendar_columns(session: Session) -> None:
    """Columns, practitioners and rooms equal the scenario's, with their weekly hours."""
    got = await session.a.list_calendars(session.practice_id)
    want = session.placed.scenario.calendar

    def hours(spans: tuple[WeeklySpan, ...]) -> list[tuple[int, str, str]]:
        return sorted((s.weekday, s.start.isoformat(), s.end.isoformat()) for s in spans)

    got_columns = {c.id: (c.display_name, c.kind, c.practitioner_id, hours(c.weekly_hours)) for c in got.columns}
    want_columns = {c.id: (c.display_name, c.kind, c.practitioner_id, hours(c.weekly_hours)) for c in want.columns}
    check(set(got_columns) == set(want_columns), f"columns {sorted(got_columns)}, expected {sorted(want_columns)}")
    for column_id, expected in want_columns.items():
        check(got_columns[column_id] == expected, f"column {column_id}: {got_columns[column_id]}, expected {expected}")
    check(
        {p.id: p.display_name for p in got.practitioners} == {p.id: p.display_name for p in want.practitioners},
        "practitioners differ from the scenario",
    )
    check({r.id for r in got.rooms} >= {c.room_id for c in want.columns if c.room_id}, "rooms of columns missing")


@case("reader.calendars.rooms", "RD-2", R)
async def calendar_rooms(session: Session) -> None:
    """Every column is in its room as the scenario has it, and rooms carry their names."""
    got = await session.a.list_calendars(session.practice_id)
    want = session.placed.scenario.calendar
    got_rooms = {c.id: c.room_id for c in got.columns}
    for column in want.columns:
        check(
            got_rooms.get(column.id) == column.room_id,
            f"column {column.id} is in room {got_rooms.get(column.id)!r}, expected {column.room_id!r}",
        )
    names = {r.id: r.display_name for r in got.rooms}
    expected = {r.id: r.display_name for r in want.rooms}
    check(names == expected, f"rooms {names}, expected {expected}")


@case("reader.calendars.appointment_types", "RD-2", R)
async def calendar_types(session: Session) -> None:
    """Appointment types with duration, buffer, lead time, visit kind, group and allowed columns; and groups."""
    got = await session.a.list_calendars(session.practice_id)
    want = session.placed.scenario.calendar

    def describe(t: object) -> tuple[object, ...]:
        return (
            t.display_name,  # type: ignore[attr-defined]
            t.duration,  # type: ignore[attr-defined]
            sorted(t.column_ids),  # type: ignore[attr-defined]
            t.visit_kind,  # type: ignore[attr-defined]
            t.group_id,  # type: ignore[attr-defined]
            t.buffer,  # type: ignore[attr-defined]
            t.min_lead,  # type: ignore[attr-defined]
        )

    got_types = {t.id: describe(t) for t in got.appointment_types}
    for t in want.appointment_types:
        check(t.id in got_types, f"appointment type {t.id} missing")
        check(got_types[t.id] == describe(t), f"appointment type {t.id}: {got_types[t.id]}, expected {describe(t)}")
    check(
        len(got_types) == len(want.appointment_types), f"{len(got_types)} types, expected {len(want.appointment_types)}"
    )
    check(
        {g.id for g in got.appointment_type_groups} == {g.id for g in want.appointment_type_groups},
        "appointment type groups differ from the scenario",
    )


@case("reader.calendars.booking_areas", "RD-2", R)
async def calendar_areas(session: Session) -> None:
    """Booking areas with their column, types, weekly spans and validity."""
    got = await session.a.list_calendars(session.practice_id)

    def describe(a: object) -> tuple[object, ...]:
        return (
            a.column_id,  # type: ignore[attr-defined]
            sorted(a.appointment_type_ids),  # type: ignore[attr-defined]
            sorted((s.weekday, s.start, s.end) for s in a.weekly_spans),  # type: ignore[attr-defined]
            a.valid_from,  # type: ignore[attr-defined]
            a.valid_until,  # type: ignore[attr-defined]
        )

    got_areas = {a.id: describe(a) for a in got.booking_areas}
    want_areas = {a.id: describe(a) for a in session.placed.scenario.calendar.booking_areas}
    check(got_areas == want_areas, f"booking areas {got_areas}, expected {want_areas}")


async def _working_equal(session: Session, window: Interval, columns: list[str]) -> None:
    for column_id in columns:
        got = await session.working(column_id, window)
        _compare("working hours", column_id, got, expected_working(session.placed, window, column_id), session)


@case("reader.working_hours.weekly", "RD-3", R)
async def working_weekly(session: Session) -> None:
    """Regular weekly hours in a week without shifts or closed days (A+28 to A+34)."""
    await _working_equal(session, session.days(session.day("A+28"), 7), _columns(session))


@case("reader.working_hours.shifts", "RD-3", R)
async def working_shifts(session: Session) -> None:
    """A Saturday shift (A+12) and a week of shifts that replace the weekly hours (A+14 to A+18)."""
    await _working_equal(session, session.days(session.day("A+12"), 7), ["dr-a", "dr-b"])


@case("reader.working_hours.closed_days", "RD-3", R)
async def working_closed(session: Session) -> None:
    """A day the whole practice is closed (A+2) and a day one column is closed (A+9)."""
    await _working_equal(session, session.days(session.day("A+2"), 1), _columns(session))
    await _working_equal(session, session.days(session.day("A+9"), 1), _columns(session))


@case("reader.working_hours.dst_days", "RD-4", R)
async def working_dst(session: Session) -> None:
    """Working hours on and around both daylight-saving switches."""
    for anchor in ("S-1", "F-1"):
        window = session.days(session.day(anchor), 3)
        await _working_equal(session, window, _columns(session))
    night = await session.working("notdienst", session.days(session.day("S+0"), 1))
    check(
        sum(e - s for s, e in night) == 3 * 3600,
        f"01:00-05:00 on the spring switch lasts {_show(night, session)}, expected 3 h",
    )
    night = await session.working("notdienst", session.days(session.day("F+0"), 1))
    check(
        sum(e - s for s, e in night) == 5 * 3600,
        f"01:00-05:00 on the autumn switch lasts {_show(night, session)}, expected 5 h",
    )


@case("reader.working_hours.full_window", "RD-3", R)
async def working_full(session: Session) -> None:
    """Working hours over the scenario's whole window (more than a year)."""
    await _working_equal(session, session.placed.window, _columns(session))


@case("reader.absences.listed", "RD-5", R)
async def absences_listed(session: Session) -> None:
    """Every absence, with its full extent, also when the window starts inside it."""
    window = session.placed.window
    got = await session.a.list_absences(session.practice_id, window, [])
    for column_id in _columns(session):
        mine = sorted((seconds(a.interval.start), seconds(a.interval.end)) for a in got if a.column_id == column_id)
        want = expected_absences(session.placed, window, column_id)
        check(mine == want, f"absences of {column_id}: {_show(mine, session)}, expected {_show(want, session)}")
    inside = Interval(session.at("A+23 12:00"), session.at("A+24 12:00"))
    got = await session.a.list_absences(session.practice_id, inside, ["dr-a"])
    want = expected_absences(session.placed, inside, "dr-a")
    mine = sorted((seconds(a.interval.start), seconds(a.interval.end)) for a in got)
    check(
        mine == want, f"a multi-day absence seen from inside: {_show(mine, session)}, expected {_show(want, session)}"
    )


@case("reader.busy.exact", "RD-6", R)
async def busy_exact(session: Session) -> None:
    """Busy time over the whole window equals the scenario's appointments and reservations."""
    window = session.placed.window
    for column_id in _columns(session):
        got = normalize(await session.busy(column_id, window))
        _compare("busy time", column_id, got, expected_busy(session.placed, window, column_id), session)


@case("reader.busy.multi_day_reservation", "RD-6", R)
async def busy_multi_day(session: Session) -> None:
    """A reservation from A+7 16:00 to A+8 10:00 over two columns, read whole and from a window inside it."""
    whole = session.days(session.day("A+7"), 2)
    inside = session.days(session.day("A+8"), 1)
    for column_id in ("dr-a", "dr-b"):
        for window in (whole, inside):
            got = normalize(await session.busy(column_id, window))
            _compare("busy time", column_id, got, expected_busy(session.placed, window, column_id), session)


@case("reader.privacy.no_patient_data", "RD-7", R)
async def no_patient_data(session: Session) -> None:
    """No reader response contains a patient's name, contact or PVS id."""
    from otv.v1 import reader_service_pb2, reader_service_pb2_grpc

    stub = reader_service_pb2_grpc.ReaderServiceStub(session.channel_a)
    parent = f"practices/{session.practice_id}"
    window = session.placed.window
    from otv_sdk.conversion import interval_to_proto

    span = interval_to_proto(window)
    week = interval_to_proto(session.days(session.day("A+0"), 14))
    responses = [
        await stub.GetPractice(reader_service_pb2.GetPracticeRequest(name=parent)),
        await stub.ListCalendars(reader_service_pb2.ListCalendarsRequest(parent=parent)),
        await stub.ListWorkingHours(reader_service_pb2.ListWorkingHoursRequest(parent=parent, window=span)),
        await stub.ListAbsences(reader_service_pb2.ListAbsencesRequest(parent=parent, window=span)),
        await stub.ListBusyTimes(reader_service_pb2.ListBusyTimesRequest(parent=parent, window=span)),
        await stub.GetFreeTime(reader_service_pb2.GetFreeTimeRequest(parent=parent, window=span)),
    ]
    for type_id in ("kontrolle", "pzr"):
        responses.append(
            await stub.FindSlots(
                reader_service_pb2.FindSlotsRequest(
                    parent=parent, appointment_type=f"{parent}/appointmentTypes/{type_id}", window=week, page_size=200
                )
            )
        )
    planted = [v for v in session.placed.personal_values() if len(v) >= 5]
    for response in responses:
        body = response.SerializeToString()
        text = str(response)
        for value in planted:
            check(
                value.encode() not in body and value not in text,
                f"{type(response).__name__} contains a planted patient value",
            )


@case("reader.free_time.exact", "RD-8", R)
async def free_exact(session: Session) -> None:
    """Free time over the whole window equals working time minus absences and busy time."""
    window = session.placed.window
    for column_id in _columns(session):
        got = await session.free(column_id, window)
        _compare("free time", column_id, got, expected_free(session.placed, window, column_id), session)


def _allowed(session: Session, type_id: str, column_id: str, start: int, end: int) -> bool:
    """True if [start, end) overlaps no booking area (of that column) that excludes the type."""
    return not in_foreign_area(session.placed, type_id, column_id, start, end)


@case("reader.slots.valid", "RD-9", R)
async def slots_valid(session: Session) -> None:
    """Every slot of every type in the first six weeks is bookable by the scenario's rules."""
    window = session.days(session.day("A+0"), 42)
    now = seconds(datetime.now(UTC))
    free = {c: expected_free(session.placed, window, c) for c in _columns(session)}
    for t in session.placed.scenario.calendar.appointment_types:
        slots = await session.slots(t.id, window)
        for slot in slots:
            start, end = seconds(slot.start), seconds(slot.end)
            where = f"{t.id} slot {datetime.fromtimestamp(start, session.placed.tz):%Y-%m-%d %H:%M} in {slot.column_id}"
            check(slot.column_id in t.column_ids, f"{where}: not a column of the type")
            check(end - start == int(t.duration.total_seconds()), f"{where}: lasts {end - start} s")
            needed = (start, end + int(t.buffer.total_seconds()))
            check(not subtract([needed], free[slot.column_id]), f"{where}: not inside free time (with buffer)")
            check(start >= now + int(t.min_lead.total_seconds()), f"{where}: inside the lead time")
            check(
                _allowed(session, t.id, slot.column_id, start, end), f"{where}: inside a booking area for other types"
            )


@case("reader.slots.booking_areas", "RD-9", R)
async def slots_areas(session: Session) -> None:
    """Area time is offered only to the area's types, and is offered to them."""
    day = session.day("A+29")  # a Tuesday: the morning area applies in every column
    window = session.days(day, 1)
    for t in ("kontrolle", "erstberatung", "schmerz"):
        for slot in await session.slots(t, window):
            start, end = seconds(slot.start), seconds(slot.end)
            check(
                _allowed(session, t, slot.column_id, start, end),
                f"{t} offered at {slot.start:%H:%M} UTC in a booking area",
            )
    morning = [s for s in await session.slots("schmerz", window, ("dr-a",)) if s.start < session.at("A+29 08:30")]
    check(bool(morning), "the pain-patient area (08:00-08:30) offers no slot to its own type")
    area_day = session.days(session.day("A+8"), 1)  # a Tuesday within the dr-b area's validity
    for slot in await session.slots("erstberatung", area_day, ("dr-b",)):
        start, end = seconds(slot.start), seconds(slot.end)
        check(
            _allowed(session, "erstberatung", "dr-b", start, end),
            f"erstberatung offered at {slot.start:%H:%M} UTC inside the dr-b area",
        )


def _starts(session: Session, starts: list[int], limit: int = 6) -> str:
    shown = ", ".join(f"{datetime.fromtimestamp(s, session.placed.tz):%Y-%m-%d %H:%M}" for s in starts[:limit])
    return shown + (f" (+{len(starts) - limit} more)" if len(starts) > limit else "")


@case("reader.slots.complete_every_column", "RD-10", R)
async def slots_complete(session: Session) -> None:
    """Every type offers, in every column it allows, every start of the first two weeks that the
    rules allow (grid, lead time, duration and buffer in free time, booking areas): none missing."""
    window = session.days(session.day("A+0"), 14)
    now = seconds(datetime.now(UTC))
    gaps: list[str] = []
    for t in session.placed.scenario.calendar.appointment_types:
        for column_id in t.column_ids:
            try:
                offered = {seconds(s.start) for s in await session.slots(t.id, window, (column_id,))}
            except InvalidArgument as error:  # the gateway refuses a column the adapter lists not for the type
                gaps.append(f"{t.id} in {column_id}: none offered, the column is refused ({error.message})")
                continue
            missing = [s for s in expected_slot_starts(session.placed, window, t, column_id, now) if s not in offered]
            if missing:
                gaps.append(f"{t.id} in {column_id}: {len(missing)} missing, at {_starts(session, missing)}")
    check(not gaps, "slots the rules allow are not offered: " + "; ".join(gaps))


@case("reader.window.limits", "RD-11", R)
async def window_limits(session: Session) -> None:
    """24 months are served; 24 months and a day are INVALID_ARGUMENT naming the window."""
    start = session.placed.window.start
    ok = Interval(start, start.replace(year=start.year + 2))
    await session.a.list_busy_times(session.practice_id, ok, [])
    too_long = Interval(start, ok.end + timedelta(days=1))
    try:
        await session.a.list_busy_times(session.practice_id, too_long, [])
    except InvalidArgument as error:
        check(any(v.field.startswith("window") for v in error.violations), f"violation names {error.violations}")
        return
    check(False, "a window longer than 24 months was accepted")


@case("reader.latency.full_window", "RD-12", R, required=False)
async def latency(session: Session) -> None:
    """Busy time, free time and the first slots of the whole window, median of 5 each, within the budget."""
    window = session.placed.window
    budget = session.latency_budget_ms
    for name, call in (
        ("ListBusyTimes", lambda: session.a.list_busy_times(session.practice_id, window, [])),
        ("GetFreeTime", lambda: session.a.get_free_time(session.practice_id, window, [])),
        ("FindSlots", lambda: session.slots_page("kontrolle", window)),
    ):
        timings = []
        for _ in range(5):
            begin = time.perf_counter()
            await call()
            timings.append((time.perf_counter() - begin) * 1000)
        median = statistics.median(timings)
        check(median <= budget, f"{name} took {median:.0f} ms (median of 5), budget {budget:.0f} ms")
