"""Deliberately faulty adapters: the reference adapter with one realistic bug each.

They prove the conformance suite can fail: `test_conformance.py` certifies each one and expects
the named case among the failures. Each is a plugin factory (`conformance_faults:<name>`).
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import time as _time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any, TypeVar

from otv_sdk.availability import SlotPolicy
from otv_sdk.matching import Candidate, NormalizedQuery, decide, normalize_query
from otv_sdk.models import Calendar, ColumnIntervals, Consent, ConsentState, Interval, PracticeProfile
from otv_sdk.ports import Adapter, CalendarEntry, CallContext, MatchOutcome, PatientQuery, WrittenEntry
from otv_sdk.reference import ADAPTER_INFO
from otv_sdk.reference.database import Database
from otv_sdk.reference.patients import ReferencePatients, candidates
from otv_sdk.reference.patients import _open_consent as open_consent
from otv_sdk.reference.patients import _patient as patient_record
from otv_sdk.reference.reader import ReferenceReader
from otv_sdk.reference.sandbox import ReferenceSandbox, insert_practice
from otv_sdk.reference.writer import ReferenceCalendarWriter
from otv_sdk.timeline import IntervalArray, normalize, subtract
from otv_sdk.wallclock import zone

T = TypeVar("T")


class ForgetfulDatabase(Database):
    """The reader's view of the PVS without some rows: as if the adapter never read that table."""

    def __init__(self, inner: Database, forget: str) -> None:  # no super().__init__: shares inner's connection
        self._inner = inner
        self._forget = forget

    def run_sync(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def forgetting(conn: sqlite3.Connection) -> T:
            conn.execute("SAVEPOINT forget")
            try:
                conn.execute(self._forget)
                return work(conn)
            finally:
                conn.execute("ROLLBACK TO forget")
                conn.execute("RELEASE forget")

        return self._inner.run_sync(forgetting)

    def close(self) -> None:
        self._inner.close()


@dataclass
class Parts:
    database: Database
    reader: ReferenceReader
    patients: ReferencePatients
    writer: ReferenceCalendarWriter


def _build(
    reader_db: Callable[[Database], Database] = lambda db: db,
    reader_class: type[ReferenceReader] = ReferenceReader,
    patients_class: type[ReferencePatients] = ReferencePatients,
    writer_class: type[ReferenceCalendarWriter] = ReferenceCalendarWriter,
) -> Adapter:
    database = Database(":memory:")
    profile = PracticeProfile("Fehlerhafte Praxis", "Europe/Berlin")
    database.run_sync(lambda conn: insert_practice(conn, profile))
    reader = reader_class(reader_db(database), SlotPolicy(grid_minutes=5))
    patients = patients_class(database)
    return Adapter(
        info=ADAPTER_INFO,
        reader=reader,
        calendar_writer=writer_class(database, reader.availability),
        patient_lookup=patients,
        consent=patients,
        sandbox=ReferenceSandbox(database, reader.availability, profile),
    )


Factory = Callable[..., Adapter]
FAULTS: dict[str, tuple[Factory, str]] = {}  # name -> (factory, the case that must fail)


def fault(expected_case: str) -> Callable[[Callable[[], Adapter]], Factory]:
    def register(build: Callable[[], Adapter]) -> Factory:
        def factory(practice_id: str, settings: Mapping[str, Any], *, base_dir: Path | None = None) -> Adapter:
            return build()

        FAULTS[build.__name__] = (factory, expected_case)
        globals()[build.__name__] = factory
        return factory

    return register


# --- reader -------------------------------------------------------------------------------------


@fault("reader.absences.listed")
def ignores_absences() -> Adapter:
    """Never reads the absence table: absences are neither listed nor taken from free time."""
    return _build(reader_db=lambda db: ForgetfulDatabase(db, "DELETE FROM absences"))


@fault("reader.working_hours.closed_days")
def ignores_closed_days() -> Adapter:
    """Holidays and closed days are not applied to working hours."""
    return _build(reader_db=lambda db: ForgetfulDatabase(db, "DELETE FROM closed_days"))


@fault("reader.working_hours.shifts")
def ignores_shifts() -> Adapter:
    """Only the weekly hours are read; shifts that replace them are ignored."""
    return _build(reader_db=lambda db: ForgetfulDatabase(db, "DELETE FROM shifts"))


@fault("reader.busy.multi_day_reservation")
def forgets_reservations() -> Adapter:
    """Busy time is read from appointments only; reservations (team meetings) are lost."""
    return _build(reader_db=lambda db: ForgetfulDatabase(db, "DELETE FROM calendar_entries WHERE kind = 'reservation'"))


@fault("reader.slots.booking_areas")
def ignores_booking_areas() -> Adapter:
    """The PVS's booking areas (Terminvorgabebereiche) are not exported, so slots ignore them."""
    return _build(reader_db=lambda db: ForgetfulDatabase(db, "DELETE FROM booking_area_spans"))


class _NaiveDstReader(ReferenceReader):
    """Working hours as local midnight + elapsed hours: off by one hour on daylight-saving days."""

    async def list_working_hours(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        tz = zone((await self.get_practice(ctx)).time_zone)

        def naive(seconds: int) -> int:
            local = datetime.fromtimestamp(seconds, tz)
            midnight = datetime.combine(local.date(), time(0), tz).astimezone(UTC)
            return int((midnight + timedelta(hours=local.hour, minutes=local.minute)).timestamp())

        result = await super().list_working_hours(ctx, window, column_ids)
        return [
            ColumnIntervals(c.column_id, IntervalArray.of([(naive(s), naive(e)) for s, e in c.intervals.pairs()]))
            for c in result
        ]


@fault("reader.working_hours.dst_days")
def naive_daylight_saving() -> Adapter:
    return _build(reader_class=_NaiveDstReader)


class _AbsenceBlindFreeTime(ReferenceReader):
    """Free time computed as working minus busy: the absences are listed but not subtracted."""

    async def get_free_time(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        working = {c.column_id: c.intervals for c in await self.list_working_hours(ctx, window, column_ids)}
        busy = {c.column_id: c.intervals for c in await self.list_busy_times(ctx, window, column_ids)}
        return [ColumnIntervals(c, subtract(normalize(working[c]), normalize(busy[c]))) for c in column_ids]


@fault("reader.free_time.exact")
def free_time_ignores_absences() -> Adapter:
    return _build(reader_class=_AbsenceBlindFreeTime)


class _AllColumnsReader(ReferenceReader):
    async def list_calendars(self, ctx: CallContext) -> Calendar:
        calendar = await super().list_calendars(ctx)
        every = calendar.column_ids()
        return replace(
            calendar, appointment_types=tuple(replace(t, column_ids=every) for t in calendar.appointment_types)
        )


@fault("reader.calendars.appointment_types")
def types_in_every_column() -> Adapter:
    """Appointment types are exported as bookable in every column."""
    return _build(reader_class=_AllColumnsReader)


class _PatientInColumnName(ReferenceReader):
    async def list_calendars(self, ctx: CallContext) -> Calendar:
        calendar = await super().list_calendars(ctx)

        def current(conn: sqlite3.Connection) -> str:
            row = conn.execute(
                "SELECT p.family_name FROM calendar_entries e JOIN patients p ON p.id = e.patient_id"
                " ORDER BY e.start_utc LIMIT 1"
            ).fetchone()
            return row[0] if row else ""

        name = await self._db.run(current)
        return replace(
            calendar,
            columns=tuple(replace(c, display_name=f"{c.display_name} (jetzt: {name})") for c in calendar.columns),
        )


@fault("reader.privacy.no_patient_data")
def patient_in_column_name() -> Adapter:
    """Column names show the patient in treatment, as the PVS's waiting-room view does."""
    return _build(reader_class=_PatientInColumnName)


# --- calendar writer ----------------------------------------------------------------------------


class _NoopWriter(ReferenceCalendarWriter):
    async def write_appointment(self, ctx: CallContext, entry: CalendarEntry) -> WrittenEntry:
        return WrittenEntry(f"pvs-{entry.reference}", extra=False)


@fault("writer.book.written")
def writes_nothing() -> Adapter:
    """Acknowledges writes without writing (the PVS import job failed silently)."""
    return _build(writer_class=_NoopWriter)


class _UndeletingWriter(ReferenceCalendarWriter):
    async def delete_appointment(self, ctx: CallContext, pvs_id: str) -> CalendarEntry | None:
        def read(conn: sqlite3.Connection) -> sqlite3.Row | None:
            row: sqlite3.Row | None = conn.execute("SELECT * FROM calendar_entries WHERE id = ?", (pvs_id,)).fetchone()
            return row

        row = await self._db.run(read)
        if row is None:
            return None
        interval = Interval(datetime.fromtimestamp(row["start_utc"], UTC), datetime.fromtimestamp(row["end_utc"], UTC))
        return CalendarEntry(row["reference"] or "", row["column_id"], "", interval, "", "", "")


@fault("writer.cancel.frees_time")
def cancels_nothing() -> Adapter:
    """Reports cancellations as done but leaves the appointment in the calendar."""
    return _build(writer_class=_UndeletingWriter)


class _RepeatingWriter(ReferenceCalendarWriter):
    async def write_appointment(self, ctx: CallContext, entry: CalendarEntry) -> WrittenEntry:
        return await super().write_appointment(ctx, replace(entry, reference=f"{entry.reference}/{uuid.uuid4()}"))


@fault("pvs.write.idempotent")
def writes_twice() -> Adapter:
    """Ignores the reference: a repeated write creates a second appointment."""
    return _build(writer_class=_RepeatingWriter)


class _DroppingWriter(ReferenceCalendarWriter):
    async def write_appointment(self, ctx: CallContext, entry: CalendarEntry) -> WrittenEntry:
        start, end = int(entry.interval.start.timestamp()), int(entry.interval.end.timestamp())

        def taken(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "SELECT 1 FROM calendar_entries WHERE column_id = ? AND start_utc < ? AND end_utc > ?",
                    (entry.column_id, end, start),
                ).fetchone()
                is not None
            )

        if await self._db.run(taken):
            return WrittenEntry("rejected", extra=False)  # the PVS refused the overlap; the adapter says nothing
        return await super().write_appointment(ctx, entry)


@fault("pvs.write.extra_appointment")
def drops_overlapping_writes() -> Adapter:
    """A write into taken time is refused by the PVS and silently lost."""
    return _build(writer_class=_DroppingWriter)


# --- patients and consent -----------------------------------------------------------------------


class _AlwaysCreates(ReferencePatients):
    def choose(
        self, conn: sqlite3.Connection, query: PatientQuery, normalized: NormalizedQuery, partner_id: str
    ) -> Candidate | None:
        return None


@fault("patients.match.existing")
def always_creates() -> Adapter:
    """Never searches: every booking creates a new patient (duplicates of every Stammpatient)."""
    return _build(patients_class=_AlwaysCreates)


class _ExactNames(ReferencePatients):
    def choose(
        self, conn: sqlite3.Connection, query: PatientQuery, normalized: NormalizedQuery, partner_id: str
    ) -> Candidate | None:
        rows = conn.execute(
            "SELECT id FROM patients WHERE given_name = ? AND family_name = ? AND birth_date = ? AND active = 1",
            (query.given_name, query.family_name, query.birth_date.isoformat()),
        ).fetchall()
        found = [c for c in candidates(conn, normalized, partner_id) if c.patient_id in {r[0] for r in rows}]
        return decide(normalized, found)


@fault("patients.match.normalisation")
def exact_name_match() -> Adapter:
    """Compares names as typed: 'JUERGEN mueller' is not 'Jürgen Müller'."""
    return _build(patients_class=_ExactNames)


class _LooseBirthDate(ReferencePatients):
    def choose(
        self, conn: sqlite3.Connection, query: PatientQuery, normalized: NormalizedQuery, partner_id: str
    ) -> Candidate | None:
        chosen = super().choose(conn, query, normalized, partner_id)
        if chosen is not None:
            return chosen
        row = conn.execute(
            "SELECT id FROM patients WHERE given_name = ? AND family_name = ? AND active = 1"
            " AND (birth_date IS NULL OR ? LIKE birth_date || '%')",
            (query.given_name, query.family_name, query.birth_date.isoformat()),
        ).fetchone()
        if row is None:
            return None
        return Candidate(row[0], query.given_name, query.family_name, query.birth_date, (), True, ConsentState.OPEN)


@fault("patients.match.birth_date_required")
def matches_missing_birth_dates() -> Adapter:
    """Treats an unknown or partial birth date on file as matching any birth date."""
    return _build(patients_class=_LooseBirthDate)


class _MatchesInactive(ReferencePatients):
    def choose(
        self, conn: sqlite3.Connection, query: PatientQuery, normalized: NormalizedQuery, partner_id: str
    ) -> Candidate | None:
        conn.execute("SAVEPOINT inactive")
        try:
            conn.execute("UPDATE patients SET active = 1")
            return super().choose(conn, query, normalized, partner_id)
        finally:
            conn.execute("ROLLBACK TO inactive")
            conn.execute("RELEASE inactive")


@fault("patients.match.inactive")
def matches_inactive_patients() -> Adapter:
    """Searches inactive (moved, merged) records too."""
    return _build(patients_class=_MatchesInactive)


class _FirstNamesake(ReferencePatients):
    def choose(
        self, conn: sqlite3.Connection, query: PatientQuery, normalized: NormalizedQuery, partner_id: str
    ) -> Candidate | None:
        pool = [c for c in candidates(conn, normalized, partner_id) if c.consent is not ConsentState.DENIED]
        pool.sort(key=lambda c: c.patient_id)
        return pool[0] if pool else None


@fault("patients.match.namesakes")
def first_namesake() -> Adapter:
    """Takes the first of several namesakes instead of deciding by contact data."""
    return _build(patients_class=_FirstNamesake)


class _RacyCreate(ReferencePatients):
    async def find_or_create_patient(self, ctx: CallContext, query: PatientQuery) -> tuple[Any, MatchOutcome]:
        normalized = normalize_query(query)
        found = await self._db.run(lambda conn: decide(normalized, candidates(conn, normalized, ctx.partner_id)))
        if found is not None:
            return await super().find_or_create_patient(ctx, query)
        await asyncio.sleep(0.05)  # the PVS's search and its insert are two calls

        def create(conn: sqlite3.Connection) -> Any:
            patient_id, now = f"n-{secrets.token_hex(6)}", int(_time.time())
            conn.execute(
                "INSERT INTO patients (id, given_name, family_name, birth_date, match_key, create_time,"
                " created_online_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    patient_id,
                    query.given_name,
                    query.family_name,
                    query.birth_date.isoformat(),
                    normalized.key,
                    now,
                    ctx.partner_id,
                ),
            )
            open_consent(conn, patient_id, ctx.partner_id, now)
            return patient_record(conn, patient_id, ctx.partner_id, normalized.contacts)

        return await self._db.run(create), MatchOutcome.CREATED


@fault("patients.create.concurrent")
def racy_create() -> Adapter:
    """Searches, then creates in a second step: concurrent bookings create duplicates."""
    return _build(patients_class=_RacyCreate)


class _IgnoresDenial(ReferencePatients):
    def choose(
        self, conn: sqlite3.Connection, query: PatientQuery, normalized: NormalizedQuery, partner_id: str
    ) -> Candidate | None:
        found = [replace(c, consent=ConsentState.OPEN) for c in candidates(conn, normalized, partner_id)]
        return decide(normalized, found)


@fault("consent.denied.invisible")
def returns_denied_patients() -> Adapter:
    """Matches patients who denied consent for the partner."""
    return _build(patients_class=_IgnoresDenial)


class _GlobalConsent(ReferencePatients):
    async def get_consent(self, ctx: CallContext, patient_id: str) -> Consent:
        def latest(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT partner_id FROM consents WHERE patient_id = ?"
                " ORDER BY update_time DESC, state = 'granted' DESC LIMIT 1",
                (patient_id,),
            ).fetchone()
            return None if row is None else str(row[0])

        partner = await self._db.run(latest)
        return await super().get_consent(replace(ctx, partner_id=partner or ctx.partner_id), patient_id)


@fault("consent.per_partner")
def consent_not_per_partner() -> Adapter:
    """Keeps one consent per patient: whatever any partner recorded last."""
    return _build(patients_class=_GlobalConsent)
