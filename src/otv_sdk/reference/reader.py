"""The reference PVS's calendar data: configuration, working-time rules, absences and entries from
SQLite, as stored. Nothing is computed here; never any patient data."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta

import numpy as np

from otv_sdk.models import (
    UTC,
    Absence,
    AppointmentType,
    AppointmentTypeGroup,
    BookingArea,
    Calendar,
    ClosedDay,
    Column,
    ColumnIntervals,
    ColumnKind,
    Interval,
    PracticeProfile,
    Practitioner,
    Room,
    Shift,
    VisitKind,
    WeeklySpan,
    WorkingTimeRules,
)
from otv_sdk.ports import CalendarDataPort, CallContext
from otv_sdk.reference.database import Database
from otv_sdk.timeline import EMPTY, IntervalArray, from_datetime

__all__ = ["ReferenceCalendarData"]


def _clock(text: str) -> time:
    return time.fromisoformat(text)


def _instant(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _seconds(value: datetime) -> int:
    return int(value.timestamp())


def _span(row: sqlite3.Row) -> WeeklySpan:
    return WeeklySpan(row["weekday"], _clock(row["start_time"]), _clock(row["end_time"]))


class ReferenceCalendarData(CalendarDataPort):
    def __init__(self, database: Database) -> None:
        self._db = database

    async def aclose(self) -> None:
        self._db.close()

    async def get_practice(self, ctx: CallContext) -> PracticeProfile:
        row = await self._db.run(lambda c: c.execute("SELECT display_name, time_zone FROM practice").fetchone())
        return PracticeProfile(display_name=row["display_name"], time_zone=row["time_zone"])

    async def list_calendars(self, ctx: CallContext) -> Calendar:
        return await self._db.run(_read_calendar)

    async def list_working_time_rules(self, ctx: CallContext, window: Interval) -> WorkingTimeRules:
        return await self._db.run(lambda c: _rules(c, window))

    async def list_absences(self, ctx: CallContext, window: Interval, column_ids: Sequence[str]) -> list[Absence]:
        def read(conn: sqlite3.Connection) -> list[Absence]:
            result: list[Absence] = []
            for column_id in column_ids or _column_ids(conn):
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
            return [ColumnIntervals(c, _entries(conn, c, lo, hi)) for c in column_ids or _column_ids(conn)]

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


def _column_ids(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT id FROM columns ORDER BY position, id")]


def _rules(conn: sqlite3.Connection, window: Interval) -> WorkingTimeRules:
    """Shifts and closed days on the days around window, as stored (a day of margin each side)."""
    first = (window.start - timedelta(days=2)).date().isoformat()
    last = (window.end + timedelta(days=2)).date().isoformat()
    closed = tuple(
        ClosedDay(date.fromisoformat(r["day"]), r["column_id"])
        for r in conn.execute("SELECT day, column_id FROM closed_days WHERE day BETWEEN ? AND ?", (first, last))
    )
    rows = conn.execute(
        "SELECT s.id, s.column_id, s.valid_from, s.valid_until, p.weekday, p.start_time, p.end_time"
        " FROM shifts s LEFT JOIN shift_spans p ON p.shift_id = s.id"
        " WHERE s.valid_from <= ? AND s.valid_until >= ? ORDER BY s.id",
        (last, first),
    )
    shifts: dict[int, tuple[str, date, date, list[WeeklySpan]]] = {}
    for row in rows:
        _, _, _, spans = shifts.setdefault(
            row["id"],
            (row["column_id"], date.fromisoformat(row["valid_from"]), date.fromisoformat(row["valid_until"]), []),
        )
        if row["weekday"] is not None:  # NULL: a shift without spans
            spans.append(_span(row))
    return WorkingTimeRules(
        shifts=tuple(Shift(c, f, u, tuple(spans)) for c, f, u, spans in shifts.values()), closed_days=closed
    )
