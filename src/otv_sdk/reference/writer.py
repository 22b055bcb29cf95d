"""The reference PVS's calendar writer: online bookings into `calendar_entries`.

A booking that fits free working time becomes a regular appointment; one that does not (the
column's hours changed, staff booked the time meanwhile) is entered as an extra appointment
(Zusatztermin) rather than lost, as DURIA does. The availability engine is updated in place.
"""

from __future__ import annotations

import sqlite3

from otv_sdk.availability_service import EngineKeeper
from otv_sdk.ports import CalendarEntry, CalendarWriterPort, CallContext, WrittenEntry
from otv_sdk.reference.database import Database
from otv_sdk.timeline import from_datetime

__all__ = ["ReferenceCalendarWriter"]


class ReferenceCalendarWriter(CalendarWriterPort):
    def __init__(self, database: Database, availability: EngineKeeper) -> None:
        self._db = database
        self._availability = availability

    async def write_appointment(self, ctx: CallContext, entry: CalendarEntry) -> WrittenEntry:
        start, end = from_datetime(entry.interval.start), from_datetime(entry.interval.end)
        engine = await self._availability.engine_for(ctx, entry.interval)

        def work(conn: sqlite3.Connection) -> tuple[WrittenEntry, bool]:
            existing = conn.execute(
                "SELECT id, extra FROM calendar_entries WHERE reference = ?", (entry.reference,)
            ).fetchone()
            if existing is not None:
                return WrittenEntry(str(existing["id"]), bool(existing["extra"])), False
            (free,) = engine.free_time(start, end, [entry.column_id])
            fits = free.intervals.pairs() == [(start, end)]
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
        if new:
            engine.add_busy(entry.column_id, start, end)
        return written

    async def delete_appointment(self, ctx: CallContext, pvs_id: str) -> None:
        def work(conn: sqlite3.Connection) -> tuple[str, int, int] | None:
            row = conn.execute("SELECT column_id, start_utc, end_utc FROM calendar_entries WHERE id = ?", (pvs_id,))
            found = row.fetchone()
            if found is None:
                return None
            conn.execute("DELETE FROM calendar_entries WHERE id = ?", (pvs_id,))
            return found["column_id"], found["start_utc"], found["end_utc"]

        removed = await self._db.run(work)
        engine = self._availability.current
        if removed is not None and engine is not None:
            column_id, start, end = removed
            if engine.covers(start, end):
                engine.remove_busy(column_id, start, end)
