"""The reference PVS's reader port: the calendar from SQLite, never with patient data."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta

import numpy as np

from otv_sdk.availability import SlotPolicy
from otv_sdk.availability_service import EngineKeeper, find_slots_from, free_time_from
from otv_sdk.models import (
    UTC,
    Absence,
    AppointmentType,
    AppointmentTypeGroup,
    BookingArea,
    Calendar,
    Column,
    ColumnIntervals,
    ColumnKind,
    Interval,
    PracticeProfile,
    Practitioner,
    Room,
    Slot,
    VisitKind,
    WeeklySpan,
)
from otv_sdk.ports import CallContext, Page, ReaderPort, SlotQuery
from otv_sdk.reference.database import Database
from otv_sdk.timeline import EMPTY, IntervalArray, from_datetime
from otv_sdk.wallclock import expand_weekly, local_dates, zone

__all__ = ["ReferenceReader"]


def _clock(text: str) -> time:
    return time.fromisoformat(text)


def _instant(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _seconds(value: datetime) -> int:
    return int(value.timestamp())


def _span(row: sqlite3.Row) -> WeeklySpan:
    return WeeklySpan(row["weekday"], _clock(row["start_time"]), _clock(row["end_time"]))


class ReferenceReader(ReaderPort):
    def __init__(self, database: Database, policy: SlotPolicy | None = None) -> None:
        self._db = database
        self._policy = policy or SlotPolicy()
        # The reference PVS changes only through this adapter, so one engine kept here is current.
        self.availability = EngineKeeper(self)

    def slot_policy(self) -> SlotPolicy:
        return self._policy

    async def get_free_time(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        return free_time_from(await self.availability.engine_for(ctx, window), window, column_ids)

    async def find_slots(self, ctx: CallContext, query: SlotQuery) -> Page[Slot]:
        return find_slots_from(await self.availability.engine_for(ctx, query.window), query)

    async def aclose(self) -> None:
        self._db.close()

    async def get_practice(self, ctx: CallContext) -> PracticeProfile:
        row = await self._db.run(lambda c: c.execute("SELECT display_name, time_zone FROM practice").fetchone())
        return PracticeProfile(display_name=row["display_name"], time_zone=row["time_zone"])

    async def list_calendars(self, ctx: CallContext) -> Calendar:
        return await self._db.run(_read_calendar)

    async def list_working_hours(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        return await self._db.run(lambda c: _working_hours(c, window, column_ids))

    async def list_absences(self, ctx: CallContext, window: Interval, column_ids: Sequence[str]) -> list[Absence]:
        def read(conn: sqlite3.Connection) -> list[Absence]:
            result: list[Absence] = []
            for column_id in column_ids:
                rows = conn.execute(
                    "SELECT start_utc, end_utc FROM absences"
                    " WHERE column_id = ? AND start_utc < ? AND end_utc > ? ORDER BY start_utc",
                    (column_id, _seconds(window.end), _seconds(window.start)),
                )
                result.extend(
                    Absence(column_id, Interval(_instant(r["start_utc"]), _instant(r["end_utc"]))) for r in rows
                )
            return result

        return await self._db.run(read)

    async def list_busy_times(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        lo, hi = from_datetime(window.start), from_datetime(window.end)

        def read(conn: sqlite3.Connection) -> list[ColumnIntervals]:
            return [ColumnIntervals(c, _entries(conn, c, lo, hi).clipped(lo, hi)) for c in column_ids]

        return await self._db.run(read)


def _entries(conn: sqlite3.Connection, column_id: str, lo: int, hi: int) -> IntervalArray:
    """Calendar entries of a column overlapping [lo, hi), sorted, unclipped."""
    cursor = conn.cursor()
    cursor.row_factory = None  # plain tuples: a 24-month read has tens of thousands of rows
    rows = cursor.execute(
        "SELECT start_utc, end_utc FROM calendar_entries"
        " WHERE column_id = ? AND start_utc < ? AND end_utc > ? ORDER BY start_utc, end_utc",
        (column_id, hi, lo),
    ).fetchall()
    if not rows:
        return EMPTY
    data = np.array(rows, dtype=np.int64)
    return IntervalArray(np.ascontiguousarray(data[:, 0]), np.ascontiguousarray(data[:, 1]))


def _read_calendar(conn: sqlite3.Connection) -> Calendar:
    hours: dict[str, list[WeeklySpan]] = {}
    for row in conn.execute("SELECT * FROM weekly_hours ORDER BY column_id, weekday, start_time"):
        hours.setdefault(row["column_id"], []).append(_span(row))
    columns = tuple(
        Column(
            id=r["id"],
            display_name=r["display_name"],
            kind=ColumnKind(r["kind"]),
            practitioner_id=r["practitioner_id"],
            room_id=r["room_id"],
            weekly_hours=tuple(hours.get(r["id"], ())),
        )
        for r in conn.execute("SELECT * FROM columns ORDER BY position, id")
    )
    allowed: dict[str, list[str]] = {}
    for row in conn.execute(
        "SELECT atc.appointment_type_id, atc.column_id FROM appointment_type_columns atc"
        " JOIN columns c ON c.id = atc.column_id ORDER BY c.position, c.id"
    ):
        allowed.setdefault(row["appointment_type_id"], []).append(row["column_id"])
    types = tuple(
        AppointmentType(
            id=r["id"],
            display_name=r["display_name"],
            duration=timedelta(minutes=r["duration_minutes"]),
            column_ids=tuple(allowed.get(r["id"], ())),
            visit_kind=VisitKind(r["visit_kind"]),
            group_id=r["group_id"],
            buffer=timedelta(minutes=r["buffer_minutes"]),
            min_lead=timedelta(minutes=r["min_lead_minutes"]),
            max_horizon=timedelta(days=r["max_horizon_days"]) if r["max_horizon_days"] else None,
        )
        for r in conn.execute("SELECT * FROM appointment_types ORDER BY position, id")
    )
    spans: dict[str, list[WeeklySpan]] = {}
    for row in conn.execute("SELECT * FROM booking_area_spans ORDER BY booking_area_id, weekday, start_time"):
        spans.setdefault(row["booking_area_id"], []).append(_span(row))
    area_types: dict[str, set[str]] = {}
    for row in conn.execute("SELECT * FROM booking_area_types"):
        area_types.setdefault(row["booking_area_id"], set()).add(row["appointment_type_id"])
    areas = tuple(
        BookingArea(
            id=r["id"],
            display_name=r["display_name"],
            column_id=r["column_id"],
            appointment_type_ids=frozenset(area_types.get(r["id"], ())),
            weekly_spans=tuple(spans.get(r["id"], ())),
            valid_from=date.fromisoformat(r["valid_from"]) if r["valid_from"] else None,
            valid_until=date.fromisoformat(r["valid_until"]) if r["valid_until"] else None,
        )
        for r in conn.execute("SELECT * FROM booking_areas ORDER BY id")
    )
    return Calendar(
        columns=columns,
        practitioners=tuple(
            Practitioner(r["id"], r["display_name"]) for r in conn.execute("SELECT * FROM practitioners ORDER BY id")
        ),
        rooms=tuple(Room(r["id"], r["display_name"]) for r in conn.execute("SELECT * FROM rooms ORDER BY id")),
        appointment_types=types,
        appointment_type_groups=tuple(
            AppointmentTypeGroup(r["id"], r["display_name"])
            for r in conn.execute("SELECT * FROM appointment_type_groups ORDER BY id")
        ),
        booking_areas=areas,
    )


def _working_hours(conn: sqlite3.Connection, window: Interval, column_ids: Sequence[str]) -> list[ColumnIntervals]:
    """Weekly hours, replaced by shifts on their days, minus closed days: the PVS's working time."""
    tz = zone(conn.execute("SELECT time_zone FROM practice").fetchone()[0])
    lo, hi = from_datetime(window.start), from_datetime(window.end)
    days = list(local_dates(window, tz))
    first, last = days[0].isoformat(), days[-1].isoformat()
    result: list[ColumnIntervals] = []
    for column_id in column_ids:
        closed = {
            date.fromisoformat(r[0])
            for r in conn.execute(
                "SELECT day FROM closed_days WHERE (column_id IS NULL OR column_id = ?) AND day BETWEEN ? AND ?",
                (column_id, first, last),
            )
        }
        weekly = [_span(r) for r in conn.execute("SELECT * FROM weekly_hours WHERE column_id = ?", (column_id,))]
        rows = conn.execute(
            "SELECT s.id, s.valid_from, s.valid_until, p.weekday, p.start_time, p.end_time"
            " FROM shifts s LEFT JOIN shift_spans p ON p.shift_id = s.id"
            " WHERE s.column_id = ? AND s.valid_from <= ? AND s.valid_until >= ?",
            (column_id, last, first),
        )
        shifts: dict[int, tuple[date, date, list[WeeklySpan]]] = {}
        for row in rows:
            _, _, spans = shifts.setdefault(
                row["id"], (date.fromisoformat(row["valid_from"]), date.fromisoformat(row["valid_until"]), [])
            )
            if row["weekday"] is not None:  # NULL: a shift without spans
                spans.append(_span(row))
        overrides = _shift_days(shifts.values(), days[0], days[-1])
        working = expand_weekly(weekly, window, tz, frozenset(closed), overrides)
        result.append(ColumnIntervals(column_id, working.clipped(lo, hi)))
    return result


def _shift_days(
    shifts: Iterable[tuple[date, date, Sequence[WeeklySpan]]], first: date, last: date
) -> dict[date, list[WeeklySpan]]:
    """Each day from first to last inside a shift -> what the column works that day instead of its
    weekly hours: the spans of that weekday of every shift covering the day; none is a day off."""
    days: dict[date, list[WeeklySpan]] = {}
    for valid_from, valid_until, spans in shifts:
        day = max(valid_from, first)
        while day <= min(valid_until, last):
            days.setdefault(day, []).extend(x for x in spans if x.weekday == day.isoweekday())
            day += timedelta(days=1)
    return days
