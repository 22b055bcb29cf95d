"""The reference PVS's calendar writer: online bookings into `calendar_entries`.

A booking that fits free working time becomes a regular appointment; one that does not (the
column's hours changed, staff booked the time meanwhile) is entered as an extra appointment
(Zusatztermin) rather than lost, as DURIA does. Every write and delete is announced on the outbox,
so the gateway keeps its engine current.
"""

from __future__ import annotations

import sqlite3

from otv_sdk.changes import BusyTimeChanged, ChangeOutbox
from otv_sdk.models import Interval
from otv_sdk.ports import CalendarEntry, CalendarWriterPort, CallContext, WrittenEntry
from otv_sdk.reference.database import Database
from otv_sdk.timeline import from_datetime, to_datetime

__all__ = ["ReferenceCalendarWriter"]


def _occupied(conn: sqlite3.Connection, column_id: str, start: int, end: int) -> bool:
    """Whether another entry or an absence already takes part of [start, end) in the column."""
    overlap = "WHERE column_id = ? AND start_utc < ? AND end_utc > ? LIMIT 1"
    for table in ("calendar_entries", "absences"):
        if conn.execute(f"SELECT 1 FROM {table} {overlap}", (column_id, end, start)).fetchone() is not None:
            return True
    return False


class ReferenceCalendarWriter(CalendarWriterPort):
    def __init__(self, database: Database, changes: ChangeOutbox | None = None) -> None:
        self._db = database
        self._changes = changes

    async def write_appointment(self, ctx: CallContext, entry: CalendarEntry) -> WrittenEntry:
        start, end = from_datetime(entry.interval.start), from_datetime(entry.interval.end)

        def work(conn: sqlite3.Connection) -> tuple[WrittenEntry, bool]:
            existing = conn.execute(
                "SELECT id, extra FROM calendar_entries WHERE reference = ?", (entry.reference,)
            ).fetchone()
            if existing is not None:
                return WrittenEntry(str(existing["id"]), bool(existing["extra"])), False
            fits = not _occupied(conn, entry.column_id, start, end)
            cursor = conn.execute(
                "INSERT INTO calendar_entries (column_id, start_utc, end_utc, kind, appointment_type_id, patient_id,"
                " reference, source_partner, category, extra) VALUES (?, ?, ?, 'appointment', ?, ?, ?, ?, ?, ?)",
                (
                    entry.column_id,
                    start,
                    end,
                    entry.appointment_type_id,
                    entry.patient_id,
                    entry.reference,
                    entry.partner_id,
                    entry.category,
                    int(not fits),
                ),
            )
            return WrittenEntry(str(cursor.lastrowid), not fits), True

        written, new = await self._db.run(work)
        if new and self._changes is not None:
            self._changes.publish(BusyTimeChanged(entry.column_id, added=(entry.interval,)))
        return written

    async def delete_appointment(self, ctx: CallContext, pvs_id: str) -> CalendarEntry | None:
        def work(conn: sqlite3.Connection) -> sqlite3.Row | None:
            query = conn.execute("SELECT * FROM calendar_entries WHERE id = ?", (pvs_id,))
            found: sqlite3.Row | None = query.fetchone()
            if found is not None:
                conn.execute("DELETE FROM calendar_entries WHERE id = ?", (pvs_id,))
            return found

        removed = await self._db.run(work)
        if removed is None:
            return None
        interval = Interval(to_datetime(removed["start_utc"]), to_datetime(removed["end_utc"]))
        if self._changes is not None:
            self._changes.publish(BusyTimeChanged(removed["column_id"], removed=(interval,)))
        return CalendarEntry(
            reference=removed["reference"] or "",
            column_id=removed["column_id"],
            appointment_type_id=removed["appointment_type_id"] or "",
            interval=interval,
            patient_id=removed["patient_id"] or "",
            partner_id=removed["source_partner"] or "",
            category=removed["category"] or "",
        )
