"""The reference PVS as a certification sandbox: load a scenario, reset.

Only enabled with the `sandbox` setting; the reference adapter of a real (demo) practice leaves
it off. Loading replaces the whole database in one transaction, so a failed load leaves the
previous data in place.
"""

from __future__ import annotations

import sqlite3
import time as _time
from datetime import time

from otv_sdk.changes import CalendarConfigChanged, ChangeOutbox
from otv_sdk.errors import InvalidArgument
from otv_sdk.models import ConsentActor, PracticeProfile, WeeklySpan
from otv_sdk.ports import CallContext, SandboxPort
from otv_sdk.reference.database import Database
from otv_sdk.reference.patients import write_consent
from otv_sdk.scenario import EntryKind, Scenario

__all__ = ["ReferenceSandbox", "insert_practice"]

# Children before parents, for the foreign keys.
_TABLES = (
    "patient_requests",
    "consent_events",
    "consents",
    "patient_contacts",
    "calendar_entries",
    "patients",
    "absences",
    "booking_area_types",
    "booking_area_spans",
    "booking_areas",
    "appointment_type_columns",
    "appointment_types",
    "appointment_type_groups",
    "closed_days",
    "shift_spans",
    "shifts",
    "weekly_hours",
    "columns",
    "rooms",
    "practitioners",
    "practice",
)


def _clock(value: time) -> str:
    return value.strftime("%H:%M")


def _span_row(span: WeeklySpan) -> tuple[int, str, str]:
    return span.weekday, _clock(span.start), _clock(span.end)


def _minutes(seconds: float) -> int:
    return int(seconds // 60)


def _wipe(conn: sqlite3.Connection) -> None:
    for table in _TABLES:
        conn.execute(f"DELETE FROM {table}")


def insert_practice(conn: sqlite3.Connection, profile: PracticeProfile) -> None:
    conn.execute("INSERT INTO practice VALUES (1, ?, ?)", (profile.display_name, profile.time_zone))


def _insert(conn: sqlite3.Connection, s: Scenario) -> None:
    cal = s.calendar
    insert_practice(conn, s.profile)
    conn.executemany("INSERT INTO practitioners VALUES (?, ?)", [(p.id, p.display_name) for p in cal.practitioners])
    conn.executemany("INSERT INTO rooms VALUES (?, ?)", [(r.id, r.display_name) for r in cal.rooms])
    for position, column in enumerate(cal.columns):
        conn.execute(
            "INSERT INTO columns VALUES (?, ?, ?, ?, ?, ?)",
            (column.id, position, column.display_name, column.kind.value, column.practitioner_id, column.room_id),
        )
        conn.executemany(
            "INSERT INTO weekly_hours VALUES (?, ?, ?, ?)", [(column.id, *_span_row(x)) for x in column.weekly_hours]
        )
    conn.executemany(
        "INSERT INTO appointment_type_groups VALUES (?, ?)",
        [(g.id, g.display_name) for g in cal.appointment_type_groups],
    )
    for position, t in enumerate(cal.appointment_types):
        conn.execute(
            "INSERT INTO appointment_types VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                t.id,
                position,
                t.display_name,
                _minutes(t.duration.total_seconds()),
                t.visit_kind.value,
                t.group_id,
                _minutes(t.buffer.total_seconds()),
                _minutes(t.min_lead.total_seconds()),
                t.max_horizon.days if t.max_horizon else None,
            ),
        )
        conn.executemany("INSERT INTO appointment_type_columns VALUES (?, ?)", [(t.id, c) for c in t.column_ids])
    for area in cal.booking_areas:
        conn.execute(
            "INSERT INTO booking_areas VALUES (?, ?, ?, ?, ?)",
            (
                area.id,
                area.display_name,
                area.column_id,
                area.valid_from.isoformat() if area.valid_from else None,
                area.valid_until.isoformat() if area.valid_until else None,
            ),
        )
        conn.executemany(
            "INSERT INTO booking_area_spans VALUES (?, ?, ?, ?)", [(area.id, *_span_row(x)) for x in area.weekly_spans]
        )
        conn.executemany(
            "INSERT INTO booking_area_types VALUES (?, ?)", [(area.id, t) for t in sorted(area.appointment_type_ids)]
        )
    for shift in s.shifts:  # a shift without spans is stored too: its days are days off
        shift_id = conn.execute(
            "INSERT INTO shifts (column_id, valid_from, valid_until) VALUES (?, ?, ?)",
            (shift.column_id, shift.valid_from.isoformat(), shift.valid_until.isoformat()),
        ).lastrowid
        conn.executemany(
            "INSERT INTO shift_spans VALUES (?, ?, ?, ?)", [(shift_id, *_span_row(x)) for x in shift.spans]
        )
    conn.executemany(
        "INSERT INTO closed_days VALUES (?, ?, 'closed')", [(d.day.isoformat(), d.column_id) for d in s.closed_days]
    )
    conn.executemany(
        "INSERT INTO absences (column_id, start_utc, end_utc, reason) VALUES (?, ?, ?, 'scenario')",
        [(a.column_id, int(a.interval.start.timestamp()), int(a.interval.end.timestamp())) for a in s.absences],
    )
    now = int(_time.time())
    for p in s.patients:
        birth = p.birth_date
        text = None
        if birth is not None:
            text = f"{birth.year:04d}-{birth.month:02d}" + (f"-{birth.day:02d}" if birth.day else "")
        conn.execute(
            "INSERT INTO patients (id, given_name, family_name, birth_date, active, create_time)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (p.id, p.given_name, p.family_name, text, int(p.active), now),
        )
        conn.executemany(
            "INSERT INTO patient_contacts VALUES (?, ?, ?)", [(p.id, c.kind.value, c.value) for c in p.contacts]
        )
        for partner, state in p.consents:
            write_consent(conn, p.id, partner, state, None, ConsentActor.PRACTICE)
    for entry in s.entries:
        start, end = int(entry.interval.start.timestamp()), int(entry.interval.end.timestamp())
        conn.executemany(
            "INSERT INTO calendar_entries (column_id, start_utc, end_utc, kind, appointment_type_id, patient_id)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    column_id,
                    start,
                    end,
                    entry.kind.value,
                    entry.appointment_type_id if entry.kind is EntryKind.APPOINTMENT else None,
                    entry.patient_id if entry.kind is EntryKind.APPOINTMENT else None,
                )
                for column_id in entry.column_ids
            ],
        )


class ReferenceSandbox(SandboxPort):
    def __init__(
        self,
        database: Database,
        empty: PracticeProfile,
        changes: ChangeOutbox | None = None,
    ) -> None:
        self._changes = changes
        self._db = database
        self._empty = empty  # what a reset sandbox is: the practice, with no calendar and no patients

    async def load_scenario(self, ctx: CallContext, scenario: Scenario) -> None:
        def work(conn: sqlite3.Connection) -> None:
            _wipe(conn)
            _insert(conn, scenario)

        try:
            await self._db.run(work)
        except sqlite3.IntegrityError:
            raise InvalidArgument.field(
                "scenario", "refers to something it does not define, or repeats an id"
            ) from None
        finally:
            if self._changes is not None:  # everything may have changed: partners re-read
                self._changes.publish(CalendarConfigChanged())

    async def reset(self, ctx: CallContext) -> None:
        def work(conn: sqlite3.Connection) -> None:
            _wipe(conn)
            insert_practice(conn, self._empty)

        try:
            await self._db.run(work)
        finally:
            if self._changes is not None:  # everything may have changed: partners re-read
                self._changes.publish(CalendarConfigChanged())
