"""Deliberately faulty adapters: the reference PVS with one realistic bug in its data access each.

A vendor serves data only (`CalendarDataPort`, `CalendarWriterPort`, `PatientDataPort`,
`ConsentDataPort` in otv_sdk.ports); every rule runs in the gateway. So each fault here is a bug a
vendor's data access can have: a table it never reads, a filter it gets wrong (contained instead of
overlapping, every column instead of the one asked for), a field it reports wrongly, an idempotency
key it drops. The suite runs the real gateway in front of each, so the gateway's engine computes
from the faulty data and a partner-visible case must fail.

`FAULTS` (registered with `@fault(case)`): `test_conformance.py` certifies each and requires that
case among the failures. `UNCAUGHT` (registered with `@uncaught(reason)`): plausible data bugs no
case catches today, each with why; `test_conformance.py` certifies each and requires that it still
passes, so a new case that catches one shows up as a failure there (then move it to `FAULTS`).
Reasons starting "harmless" are absorbed by the gateway or left open by the contract (list order,
id formats, slower reads within the time budget): these must never fail, a failure is a false
failure of the suite. Those starting "gap" are real bugs no case catches yet.

Faults whose bug lived in computed logic cannot exist any more, because these rules are the
gateway's now; their tests are:
- naive_daylight_saving (working hours as local midnight plus elapsed hours) and ignoring shifts
  or closed days in the computation: otv_rules.working_time / wallclock, tested by
  tests/test_wallclock.py, tests/test_availability_property.py, tests/test_reference_shifts.py.
  (The data-level DST bug, instants converted with a fixed offset, is `entries_at_fixed_offset`.)
- free_time_ignores_absences: otv_rules.availability, tested by tests/test_availability.py,
  tests/test_availability_property.py, tests/test_availability_gateway.py.
- exact_name_match: otv_rules.names / matching, tested by tests/test_names.py,
  tests/test_patient_matching.py.
- first_namesake: otv_rules.matching, tested by tests/test_patient_matching.py,
  tests/test_patients_property.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from otv_sdk.changes import ChangeOutbox
from otv_sdk.errors import NotFound
from otv_sdk.models import (
    Absence,
    Calendar,
    ColumnIntervals,
    Consent,
    ConsentActor,
    ConsentEvidence,
    ConsentState,
    ContactKind,
    Interval,
    NewPatient,
    PatientRecord,
    PracticeProfile,
    WorkingTimeRules,
)
from otv_sdk.ports import Adapter, CalendarEntry, CallContext, WrittenEntry
from otv_sdk.reference import ADAPTER_INFO
from otv_sdk.reference.database import Database
from otv_sdk.reference.patients import ReferencePatients
from otv_sdk.reference.patients import _read_consent as stored_consent
from otv_sdk.reference.patients import _record as stored_record
from otv_sdk.reference.reader import ReferenceCalendarData
from otv_sdk.reference.sandbox import _TABLES as SANDBOX_TABLES
from otv_sdk.reference.sandbox import ReferenceSandbox, insert_practice
from otv_sdk.reference.writer import ReferenceCalendarWriter
from otv_sdk.timeline import IntervalArray, concatenate, from_datetime, to_datetime

__all__ = ["FAULTS", "SERVER_FAULTS", "UNCAUGHT", "reference"]

T = TypeVar("T")


class ForgetfulDatabase(Database):
    """The adapter's view of the PVS without some rows: as if its queries never read them."""

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


CalendarFactory = Callable[[Database], ReferenceCalendarData]
WriterFactory = Callable[[Database, ChangeOutbox], ReferenceCalendarWriter]
PatientsFactory = Callable[[Database], ReferencePatients]
SandboxFactory = Callable[[Database, PracticeProfile, ChangeOutbox], ReferenceSandbox]


def _build(
    calendar: CalendarFactory = ReferenceCalendarData,
    writer: WriterFactory = ReferenceCalendarWriter,
    patients: PatientsFactory = ReferencePatients,
    sandbox: SandboxFactory = ReferenceSandbox,
) -> Adapter:
    """The reference adapter as `create_adapter` bundles it (sandbox on, no demo data), with parts replaced."""
    database = Database(":memory:")
    profile = PracticeProfile("Fehlerhafte Praxis", "Europe/Berlin")
    database.run_sync(lambda conn: insert_practice(conn, profile))
    changes = ChangeOutbox()
    records = patients(database)
    return Adapter(
        info=ADAPTER_INFO,
        calendar=calendar(database),
        calendar_writer=writer(database, changes),
        patients=records,
        consents=records,
        sandbox=sandbox(database, profile, changes),
        changes=changes,
    )


Factory = Callable[..., Adapter]
FAULTS: dict[str, tuple[Factory, str]] = {}  # name -> (factory, the case that must fail)
UNCAUGHT: dict[str, tuple[Factory, str]] = {}  # name -> (factory, why no case fails)


def _factory(build: Callable[[], Adapter]) -> Factory:
    def factory(practice_id: str, settings: Mapping[str, Any], *, base_dir: Path | None = None) -> Adapter:
        return build()

    globals()[build.__name__] = factory  # the plugin `conformance_faults:<name>`
    return factory


def fault(expected_case: str) -> Callable[[Callable[[], Adapter]], Factory]:
    def register(build: Callable[[], Adapter]) -> Factory:
        factory = _factory(build)
        FAULTS[build.__name__] = (factory, expected_case)
        return factory

    return register


def uncaught(reason: str) -> Callable[[Callable[[], Adapter]], Factory]:
    def register(build: Callable[[], Adapter]) -> Factory:
        factory = _factory(build)
        UNCAUGHT[build.__name__] = (factory, reason)
        return factory

    return register


# --- calendar data --------------------------------------------------------------------------------


class _NoAbsences(ReferenceCalendarData):
    async def list_absences(self, ctx: CallContext, window: Interval, column_ids: Sequence[str]) -> list[Absence]:
        return []


@fault("reader.absences.listed")
def ignores_absences() -> Adapter:
    """Never reads absences (the PVS keeps them in a separate holiday planner): none are listed or blocked."""
    return _build(calendar=_NoAbsences)


class _ClippedAbsences(ReferenceCalendarData):
    async def list_absences(self, ctx: CallContext, window: Interval, column_ids: Sequence[str]) -> list[Absence]:
        found = await super().list_absences(ctx, window, column_ids)
        return [
            Absence(a.column_id, Interval(max(a.interval.start, window.start), min(a.interval.end, window.end)))
            for a in found
        ]


@fault("reader.absences.listed")
def clips_absences() -> Adapter:
    """Cuts absences to the window asked for: a multi-day absence seen from inside loses its true extent."""
    return _build(calendar=_ClippedAbsences)


class _ContainedAbsences(ReferenceCalendarData):
    async def list_absences(self, ctx: CallContext, window: Interval, column_ids: Sequence[str]) -> list[Absence]:
        found = await super().list_absences(ctx, window, column_ids)
        return [a for a in found if a.interval.start >= window.start and a.interval.end <= window.end]


@fault("reader.absences.listed")
def absences_inside_window_only() -> Adapter:
    """Selects absences contained in the window instead of overlapping it: those over its edges are lost."""
    return _build(calendar=_ContainedAbsences)


class _NoClosedDays(ReferenceCalendarData):
    async def list_working_time_rules(self, ctx: CallContext, window: Interval) -> WorkingTimeRules:
        return replace(await super().list_working_time_rules(ctx, window), closed_days=())


@fault("reader.working_hours.closed_days")
def ignores_closed_days() -> Adapter:
    """Does not export closed days (holidays): the gateway sees a normal working day."""
    return _build(calendar=_NoClosedDays)


class _NoShifts(ReferenceCalendarData):
    async def list_working_time_rules(self, ctx: CallContext, window: Interval) -> WorkingTimeRules:
        return replace(await super().list_working_time_rules(ctx, window), shifts=())


@fault("reader.working_hours.shifts")
def ignores_shifts() -> Adapter:
    """Exports only the weekly hours: the shifts that replace them (Schichten) are never handed over."""
    return _build(calendar=_NoShifts)


class _ShiftsStartingInWindow(ReferenceCalendarData):
    async def list_working_time_rules(self, ctx: CallContext, window: Interval) -> WorkingTimeRules:
        rules = await super().list_working_time_rules(ctx, window)
        first = window.start.astimezone(ZoneInfo((await self.get_practice(ctx)).time_zone)).date()
        return replace(rules, shifts=tuple(s for s in rules.shifts if s.valid_from >= first))


@fault("pvs.rules.overlapping")
def shifts_starting_in_window_only() -> Adapter:
    """Selects shifts that start in the window instead of overlapping it: a shift begun earlier is lost."""
    return _build(calendar=_ShiftsStartingInWindow)


def _forgets_reservations(database: Database) -> ReferenceCalendarData:
    return ReferenceCalendarData(ForgetfulDatabase(database, "DELETE FROM calendar_entries WHERE kind = 'reservation'"))


@fault("reader.busy.multi_day_reservation")
def forgets_reservations() -> Adapter:
    """Busy time is read from appointments only; reservations (team meetings) are lost."""
    return _build(calendar=_forgets_reservations)


class _ContainedEntries(ReferenceCalendarData):
    async def list_busy_times(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        lo, hi = from_datetime(window.start), from_datetime(window.end)
        return [
            ColumnIntervals(
                c.column_id, IntervalArray.of([(s, e) for s, e in c.intervals.pairs() if s >= lo and e <= hi])
            )
            for c in await super().list_busy_times(ctx, window, column_ids)
        ]


@fault("reader.busy.multi_day_reservation")
def busy_inside_window_only() -> Adapter:
    """Selects entries contained in the window instead of overlapping it: those over its edge days are lost."""
    return _build(calendar=_ContainedEntries)


class _EntriesOfEveryColumn(ReferenceCalendarData):
    async def list_busy_times(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        every = await super().list_busy_times(ctx, window, [])
        merged = concatenate(*(c.intervals for c in every)).sorted()
        return [ColumnIntervals(c, merged) for c in column_ids or [c.column_id for c in every]]


@fault("reader.busy.exact")
def busy_ignores_columns() -> Adapter:
    """The entry query lacks its column condition: each column gets the entries of every column."""
    return _build(calendar=_EntriesOfEveryColumn)


class _UnaskedColumns(ReferenceCalendarData):
    async def list_busy_times(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        return await super().list_busy_times(ctx, window, [])


@uncaught(
    "harmless: the gateway keys busy times by column id and drops columns it did not ask for "
    "(only wasted reads, e.g. 24 months of every column)"
)
def busy_of_unasked_columns() -> Adapter:
    """Ignores the columns asked for and always returns busy times of every column."""
    return _build(calendar=_UnaskedColumns)


class _FixedOffsetEntries(ReferenceCalendarData):
    async def list_busy_times(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        tz = ZoneInfo((await self.get_practice(ctx)).time_zone)

        def winter_offset(seconds: int) -> int:  # wall-clock time read back as if it were UTC+01:00
            offset = datetime.fromtimestamp(seconds, tz).utcoffset()
            return seconds + (0 if offset is None else int(offset.total_seconds())) - 3600

        return [
            ColumnIntervals(
                c.column_id, IntervalArray.of([(winter_offset(s), winter_offset(e)) for s, e in c.intervals.pairs()])
            )
            for c in await super().list_busy_times(ctx, window, column_ids)
        ]


@fault("reader.busy.exact")
def entries_at_fixed_offset() -> Adapter:
    """The PVS stores wall-clock times; the adapter converts them with a fixed +01:00: summer entries move an hour."""
    return _build(calendar=_FixedOffsetEntries)


class _UnsortedEntries(ReferenceCalendarData):
    async def list_busy_times(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        return [
            ColumnIntervals(c.column_id, IntervalArray.of(c.intervals.pairs()[::-1]))
            for c in await super().list_busy_times(ctx, window, column_ids)
        ]


@uncaught("harmless: the gateway sorts busy times before clipping them, and its engine normalises them")
def unsorted_busy_times() -> Adapter:
    """The entry query has no ORDER BY: busy times come in storage order (here: newest first)."""
    return _build(calendar=_UnsortedEntries)


class _NoBookingAreaSpans(ReferenceCalendarData):
    async def list_calendars(self, ctx: CallContext) -> Calendar:
        calendar = await super().list_calendars(ctx)
        return replace(calendar, booking_areas=tuple(replace(a, weekly_spans=()) for a in calendar.booking_areas))


@fault("reader.slots.booking_areas")
def ignores_booking_areas() -> Adapter:
    """Booking areas (Terminvorgabebereiche) are exported without their times, so slots ignore them."""
    return _build(calendar=_NoBookingAreaSpans)


class _NoAreaValidity(ReferenceCalendarData):
    async def list_calendars(self, ctx: CallContext) -> Calendar:
        calendar = await super().list_calendars(ctx)
        return replace(
            calendar,
            booking_areas=tuple(replace(a, valid_from=None, valid_until=None) for a in calendar.booking_areas),
        )


@fault("reader.calendars.booking_areas")
def booking_areas_always_valid() -> Adapter:
    """Booking areas are exported without their validity dates: a seasonal area applies all year."""
    return _build(calendar=_NoAreaValidity)


class _AllColumns(ReferenceCalendarData):
    async def list_calendars(self, ctx: CallContext) -> Calendar:
        calendar = await super().list_calendars(ctx)
        every = calendar.column_ids()
        return replace(
            calendar, appointment_types=tuple(replace(t, column_ids=every) for t in calendar.appointment_types)
        )


@fault("reader.calendars.appointment_types")
def types_in_every_column() -> Adapter:
    """Appointment types are exported as bookable in every column."""
    return _build(calendar=_AllColumns)


class _PatientInColumnName(ReferenceCalendarData):
    async def list_calendars(self, ctx: CallContext) -> Calendar:
        calendar = await super().list_calendars(ctx)

        def current(conn: sqlite3.Connection) -> str:
            row = conn.execute(
                "SELECT p.family_name FROM calendar_entries e JOIN patients p ON p.id = e.patient_id"
                " ORDER BY e.start_utc LIMIT 1"
            ).fetchone()
            return str(row[0]) if row else ""

        name = await self._db.run(current)
        return replace(
            calendar,
            columns=tuple(replace(c, display_name=f"{c.display_name} (jetzt: {name})") for c in calendar.columns),
        )


@fault("reader.privacy.no_patient_data")
def patient_in_column_name() -> Adapter:
    """Column names show the patient in treatment, as the PVS's waiting-room view does."""
    return _build(calendar=_PatientInColumnName)


# --- calendar writer ------------------------------------------------------------------------------


class _NoopWriter(ReferenceCalendarWriter):
    async def write_appointment(self, ctx: CallContext, entry: CalendarEntry) -> WrittenEntry:
        return WrittenEntry(f"pvs-{entry.reference}", extra=False)


@fault("writer.book.written")
def writes_nothing() -> Adapter:
    """Acknowledges writes without writing (the PVS import job failed silently)."""
    return _build(writer=_NoopWriter)


class _UndeletingWriter(ReferenceCalendarWriter):
    async def delete_appointment(self, ctx: CallContext, pvs_id: str) -> CalendarEntry | None:
        def read(conn: sqlite3.Connection) -> sqlite3.Row | None:
            row: sqlite3.Row | None = conn.execute("SELECT * FROM calendar_entries WHERE id = ?", (pvs_id,)).fetchone()
            return row

        row = await self._db.run(read)
        if row is None:
            return None
        interval = Interval(to_datetime(row["start_utc"]), to_datetime(row["end_utc"]))
        return CalendarEntry(
            reference=row["reference"] or "",
            column_id=row["column_id"],
            appointment_type_id=row["appointment_type_id"] or "",
            interval=interval,
            patient_id=row["patient_id"] or "",
            partner_id=row["source_partner"] or "",
            category=row["category"] or "",
        )


@fault("writer.cancel.frees_time")
def cancels_nothing() -> Adapter:
    """Reports deletions as done but leaves the appointment in the calendar."""
    return _build(writer=_UndeletingWriter)


class _RepeatingWriter(ReferenceCalendarWriter):
    async def write_appointment(self, ctx: CallContext, entry: CalendarEntry) -> WrittenEntry:
        return await super().write_appointment(ctx, replace(entry, reference=f"{entry.reference}/{uuid.uuid4()}"))


@fault("pvs.write.idempotent")
def writes_twice() -> Adapter:
    """Does not keep the gateway's reference: a repeated write creates a second appointment."""
    return _build(writer=_RepeatingWriter)


class _DroppingWriter(ReferenceCalendarWriter):
    async def write_appointment(self, ctx: CallContext, entry: CalendarEntry) -> WrittenEntry:
        start, end = from_datetime(entry.interval.start), from_datetime(entry.interval.end)

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
    return _build(writer=_DroppingWriter)


class _NeverExtraWriter(ReferenceCalendarWriter):
    async def write_appointment(self, ctx: CallContext, entry: CalendarEntry) -> WrittenEntry:
        return replace(await super().write_appointment(ctx, entry), extra=False)


@fault("pvs.write.extra_appointment")
def hides_extra_appointments() -> Adapter:
    """Keeps a write into taken time as an extra appointment but reports it as a regular one."""
    return _build(writer=_NeverExtraWriter)


class _StrictDeleteWriter(ReferenceCalendarWriter):
    async def delete_appointment(self, ctx: CallContext, pvs_id: str) -> CalendarEntry | None:
        removed = await super().delete_appointment(ctx, pvs_id)
        if removed is None:
            raise NotFound.field("pvs_id", "no such calendar entry")  # the PVS API's 404, passed on
        return removed


@fault("pvs.delete.repeatable")
def repeated_delete_fails() -> Adapter:
    """Deleting an entry that is already gone is an error, so a retried delete after a crash fails."""
    return _build(writer=_StrictDeleteWriter)


# --- patient data ---------------------------------------------------------------------------------


class _FindsNobody(ReferencePatients):
    async def list_patients_born_on(self, ctx: CallContext, birth_date: date) -> list[PatientRecord]:
        return []


@fault("patients.match.existing")
def always_creates() -> Adapter:
    """The search returns nobody: every booking creates a new patient (duplicates of every Stammpatient)."""
    return _build(patients=_FindsNobody)


class _LooseBirthDates(ReferencePatients):
    async def list_patients_born_on(self, ctx: CallContext, birth_date: date) -> list[PatientRecord]:
        exact = await super().list_patients_born_on(ctx, birth_date)

        def unknown(conn: sqlite3.Connection) -> list[PatientRecord]:
            rows = conn.execute(
                "SELECT * FROM patients WHERE birth_date IS NULL"
                " OR (length(birth_date) < 10 AND ? LIKE birth_date || '%') ORDER BY id",
                (birth_date.isoformat(),),
            ).fetchall()
            return [replace(stored_record(conn, r, ctx.partner_id), birth_date=birth_date) for r in rows]

        return exact + await self._db.run(unknown)


@fault("patients.match.birth_date_required")
def matches_missing_birth_dates() -> Adapter:
    """Also returns patients whose birth date on file is unknown or only year and month, with the date asked for."""
    return _build(patients=_LooseBirthDates)


class _AllActive(ReferencePatients):
    async def list_patients_born_on(self, ctx: CallContext, birth_date: date) -> list[PatientRecord]:
        return [replace(r, active=True) for r in await super().list_patients_born_on(ctx, birth_date)]

    async def read_consent(self, ctx: CallContext, patient_id: str) -> Consent:
        def read(conn: sqlite3.Connection) -> Consent:
            conn.execute("SAVEPOINT active")
            try:
                conn.execute("UPDATE patients SET active = 1 WHERE id = ?", (patient_id,))
                return stored_consent(conn, patient_id, ctx.partner_id)
            finally:
                conn.execute("ROLLBACK TO active")
                conn.execute("RELEASE active")

        return await self._db.run(read)


@fault("patients.match.inactive")
def matches_inactive_patients() -> Adapter:
    """Never reads the inactive flag: inactive (moved, merged) records are reported as active everywhere."""
    return _build(patients=_AllActive)


class _NoContacts(ReferencePatients):
    async def list_patients_born_on(self, ctx: CallContext, birth_date: date) -> list[PatientRecord]:
        return [replace(r, contacts=()) for r in await super().list_patients_born_on(ctx, birth_date)]


@fault("patients.match.namesakes")
def search_without_contacts() -> Adapter:
    """The search returns no contacts, so namesakes cannot be told apart by their phone number."""
    return _build(patients=_NoContacts)


class _CachedSearch(ReferencePatients):
    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self._searches: dict[tuple[str, date], list[PatientRecord]] = {}

    async def list_patients_born_on(self, ctx: CallContext, birth_date: date) -> list[PatientRecord]:
        key = (ctx.partner_id, birth_date)
        if key not in self._searches:
            self._searches[key] = await super().list_patients_born_on(ctx, birth_date)
        return self._searches[key]


@fault("patients.create.no_duplicate")
def stale_patient_search() -> Adapter:
    """Caches searches per birth date and never drops them: a patient it has just created is not found again."""
    return _build(patients=_CachedSearch)


class _RacyCreate(ReferencePatients):
    async def create_patient(self, ctx: CallContext, patient: NewPatient, request_id: str) -> PatientRecord:
        return await super().create_patient(ctx, patient, str(uuid.uuid4()))


@fault("pvs.patients.create_idempotent")
def racy_create() -> Adapter:
    """Drops the gateway's request_id: a concurrent or retried creation (two replicas) makes two patients."""
    return _build(patients=_RacyCreate)


class _NotMarkedOnline(ReferencePatients):
    async def create_patient(self, ctx: CallContext, patient: NewPatient, request_id: str) -> PatientRecord:
        record = await super().create_patient(ctx, patient, request_id)
        await self._db.run(
            lambda conn: conn.execute("UPDATE patients SET created_online_by = NULL WHERE id = ?", (record.id,))
        )
        return replace(record, created_online_by=None)


@fault("patients.match.birth_date_required")
def creates_without_origin() -> Adapter:
    """The PVS has no field for who created a record: patients created online are not marked as such."""
    return _build(patients=_NotMarkedOnline)


class _RepeatedNotes(ReferencePatients):
    async def append_patient_note(self, ctx: CallContext, patient_id: str, line: str, request_id: str) -> None:
        await super().append_patient_note(ctx, patient_id, line, str(uuid.uuid4()))


@uncaught(
    "gap: no case reads a patient's note or repeats append_patient_note with one request_id, "
    "so a note line appended twice is never seen"
)
def notes_twice() -> Adapter:
    """Drops the note's request_id: every retry appends the new contact details to the note again."""
    return _build(patients=_RepeatedNotes)


# --- consent data ---------------------------------------------------------------------------------


class _DenialAsOpen(ReferencePatients):
    async def list_patients_born_on(self, ctx: CallContext, birth_date: date) -> list[PatientRecord]:
        found = await super().list_patients_born_on(ctx, birth_date)
        return [replace(r, consent=ConsentState.OPEN) if r.consent is ConsentState.DENIED else r for r in found]

    async def read_consent(self, ctx: CallContext, patient_id: str) -> Consent:
        consent = await super().read_consent(ctx, patient_id)
        return replace(consent, state=ConsentState.OPEN) if consent.state is ConsentState.DENIED else consent


@fault("consent.denied.invisible")
def returns_denied_patients() -> Adapter:
    """Reports a denial as 'open' (the PVS knows only 'granted' or nothing), so the patient is matched."""
    return _build(patients=_DenialAsOpen)


class _LatestConsent(ReferencePatients):
    async def read_consent(self, ctx: CallContext, patient_id: str) -> Consent:
        def latest(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT partner_id FROM consents WHERE patient_id = ?"
                " ORDER BY update_time DESC, state = 'granted' DESC LIMIT 1",
                (patient_id,),
            ).fetchone()
            return None if row is None else str(row[0])

        partner = await self._db.run(latest)
        return await super().read_consent(replace(ctx, partner_id=partner or ctx.partner_id), patient_id)


@fault("consent.per_partner")
def consent_not_per_partner() -> Adapter:
    """Reads one consent per patient: whatever any partner recorded last."""
    return _build(patients=_LatestConsent)


class _AnyConsentListed(ReferencePatients):
    async def list_consented_patients(self, ctx: CallContext, after: str, limit: int) -> list[PatientRecord]:
        def read(conn: sqlite3.Connection) -> list[PatientRecord]:
            rows = conn.execute(
                "SELECT DISTINCT p.* FROM consents c JOIN patients p ON p.id = c.patient_id"
                " WHERE c.partner_id = ? AND p.id > ? ORDER BY p.id LIMIT ?",
                (ctx.partner_id, after, limit),
            ).fetchall()
            return [stored_record(conn, r, ctx.partner_id) for r in rows]

        return await self._db.run(read)


@fault("pvs.consent.shared_exact")
def shares_without_grant() -> Adapter:
    """The shared-patients query forgets its conditions: every patient with any consent record is returned."""
    return _build(patients=_AnyConsentListed)


# --- written entries, exactly (issue 19) ----------------------------------------------------------


class _QuarterHourWriter(ReferenceCalendarWriter):
    async def write_appointment(self, ctx: CallContext, entry: CalendarEntry) -> WrittenEntry:
        minutes = -(-(entry.interval.end - entry.interval.start) // timedelta(minutes=15)) * 15
        end = entry.interval.start + timedelta(minutes=minutes)
        return await super().write_appointment(ctx, replace(entry, interval=Interval(entry.interval.start, end)))


@fault("pvs.write.exact")
def rounds_length_to_quarter_hours() -> Adapter:
    """The PVS calendar has a 15-minute raster: a 25-minute booking is stored as 30 minutes."""
    return _build(writer=_QuarterHourWriter)


class _AlwaysExtraWriter(ReferenceCalendarWriter):
    async def write_appointment(self, ctx: CallContext, entry: CalendarEntry) -> WrittenEntry:
        return replace(await super().write_appointment(ctx, entry), extra=True)


@fault("pvs.write.exact")
def flags_every_write_extra() -> Adapter:
    """Enters every online booking as an extra appointment (Zusatztermin) and says so, fitting or not."""
    return _build(writer=_AlwaysExtraWriter)


class _WinterOffsetWriter(ReferenceCalendarWriter):
    async def write_appointment(self, ctx: CallContext, entry: CalendarEntry) -> WrittenEntry:
        tz = ZoneInfo("Europe/Berlin")
        offset = entry.interval.start.astimezone(tz).utcoffset() or timedelta(0)
        shift = offset - timedelta(hours=1)  # wall-clock time written back as if it were +01:00
        moved = Interval(entry.interval.start + shift, entry.interval.end + shift)
        return await super().write_appointment(ctx, replace(entry, interval=moved))


@fault("pvs.write.exact")
def writes_summer_an_hour_late() -> Adapter:
    """Converts the booking to the PVS's wall-clock time with a fixed +01:00: summer bookings land an hour off."""
    return _build(writer=_WinterOffsetWriter)


class _FirstColumnWriter(ReferenceCalendarWriter):
    async def write_appointment(self, ctx: CallContext, entry: CalendarEntry) -> WrittenEntry:
        def first(conn: sqlite3.Connection) -> str:
            row = conn.execute(
                "SELECT column_id FROM appointment_type_columns WHERE appointment_type_id = ? ORDER BY column_id",
                (entry.appointment_type_id,),
            ).fetchone()
            return entry.column_id if row is None else str(row[0])

        return await super().write_appointment(ctx, replace(entry, column_id=await self._db.run(first)))


@fault("pvs.write.exact")
def writes_into_types_first_column() -> Adapter:
    """Books into the appointment type's first column, ignoring the column asked for."""
    return _build(writer=_FirstColumnWriter)


class _TypeLengthWriter(ReferenceCalendarWriter):
    async def write_appointment(self, ctx: CallContext, entry: CalendarEntry) -> WrittenEntry:
        def minutes(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(
                "SELECT duration_minutes FROM appointment_types WHERE id = ?", (entry.appointment_type_id,)
            ).fetchone()
            return None if row is None else int(row[0])

        length = await self._db.run(minutes)
        if length is None:
            return await super().write_appointment(ctx, entry)
        end = entry.interval.start + timedelta(minutes=length)
        return await super().write_appointment(ctx, replace(entry, interval=Interval(entry.interval.start, end)))


@fault("pvs.write.exact")
def writes_types_standard_length() -> Adapter:
    """Stores the start and the type's standard length, dropping the end the gateway asked for."""
    return _build(writer=_TypeLengthWriter)


class _ExtraByReferenceMissing(ReferenceCalendarWriter):
    async def write_appointment(self, ctx: CallContext, entry: CalendarEntry) -> WrittenEntry:
        written = await super().write_appointment(ctx, entry)
        if not written.extra:
            return written

        def detach(conn: sqlite3.Connection) -> None:  # extra appointments live without the reference
            conn.execute("UPDATE calendar_entries SET reference = NULL WHERE id = ?", (int(written.pvs_id),))

        await self._db.run(detach)
        return written


@fault("pvs.write.extra_idempotent")
def extra_appointments_written_twice() -> Adapter:
    """Extra appointments are stored without the gateway's reference: a repeated write enters one again."""
    return _build(writer=_ExtraByReferenceMissing)


class _DeletesOverlapping(ReferenceCalendarWriter):
    async def delete_appointment(self, ctx: CallContext, pvs_id: str) -> CalendarEntry | None:
        removed = await super().delete_appointment(ctx, pvs_id)
        if removed is not None:
            start, end = from_datetime(removed.interval.start), from_datetime(removed.interval.end)
            await self._db.run(
                lambda conn: conn.execute(
                    "DELETE FROM calendar_entries WHERE column_id = ? AND start_utc < ? AND end_utc > ?"
                    " AND reference IS NOT NULL",
                    (removed.column_id, end, start),
                )
            )
        return removed


@fault("pvs.delete.exact")
def delete_removes_overlapping() -> Adapter:
    """Deletes by column and time instead of by id: overlapping online entries go with it."""
    return _build(writer=_DeletesOverlapping)


class _ExtraUndeletable(ReferenceCalendarWriter):
    async def delete_appointment(self, ctx: CallContext, pvs_id: str) -> CalendarEntry | None:
        def extra(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT extra FROM calendar_entries WHERE id = ?", (pvs_id,)).fetchone()
            return row is not None and bool(row[0])

        if not await self._db.run(extra):
            return await super().delete_appointment(ctx, pvs_id)
        return await _UndeletingWriter.delete_appointment(self, ctx, pvs_id)  # type: ignore[arg-type]


@fault("pvs.delete.exact")
def keeps_deleted_extra_appointments() -> Adapter:
    """Deleting an extra appointment reports success but keeps it (the PVS's cancel works on slots only)."""
    return _build(writer=_ExtraUndeletable)


class _DeleteReturnsAsked(ReferenceCalendarWriter):
    async def delete_appointment(self, ctx: CallContext, pvs_id: str) -> CalendarEntry | None:
        removed = await super().delete_appointment(ctx, pvs_id)
        if removed is None:
            return None
        return replace(removed, column_id="dr-a" if removed.column_id == "dr-b" else removed.column_id)


@fault("pvs.write.exact")
def delete_reports_wrong_column() -> Adapter:
    """The delete answers with the practitioner's home column instead of the column the entry was in."""
    return _build(writer=_DeleteReturnsAsked)


def _silent_writer(database: Database, changes: ChangeOutbox) -> ReferenceCalendarWriter:
    return ReferenceCalendarWriter(database, None)


@fault("pvs.changes.announced")
def announces_nothing() -> Adapter:
    """Declares an outbox but its writer never publishes: the gateway's engine keeps stale busy times."""
    return _build(writer=_silent_writer)


class _AnnouncesWritesOnly(ReferenceCalendarWriter):
    def __init__(self, database: Database, changes: ChangeOutbox | None = None) -> None:
        super().__init__(database, changes)
        self._quiet = ReferenceCalendarWriter(database, None)

    async def delete_appointment(self, ctx: CallContext, pvs_id: str) -> CalendarEntry | None:
        return await self._quiet.delete_appointment(ctx, pvs_id)


@fault("pvs.changes.announced")
def announces_writes_only() -> Adapter:
    """Announces new entries but not deleted ones: a cancelled slot stays busy for partners."""
    return _build(writer=_AnnouncesWritesOnly)


# --- sandbox --------------------------------------------------------------------------------------


class _ResetKeepsPatients(ReferenceSandbox):
    async def reset(self, ctx: CallContext) -> None:
        def work(conn: sqlite3.Connection) -> None:
            for table in ("calendar_entries", "absences"):
                conn.execute(f"DELETE FROM {table}")

        await self._db.run(work)


@fault("pvs.sandbox.reset")
def reset_keeps_patients() -> Adapter:
    """The reset clears the calendar only: the scenario's and the online-created patients stay."""
    return _build(sandbox=_ResetKeepsPatients)


class _ResetKeepsOnlinePatients(ReferenceSandbox):
    async def reset(self, ctx: CallContext) -> None:
        def work(conn: sqlite3.Connection) -> None:
            for table in SANDBOX_TABLES:
                where = " WHERE created_online_by IS NULL" if table == "patients" else ""
                conn.execute(f"DELETE FROM {table}{where}")

        await self._db.run(work)


@fault("pvs.sandbox.reset")
def reset_keeps_online_patients() -> Adapter:
    """The reset deletes the patients the scenario loaded but not those created online since."""
    return _build(sandbox=_ResetKeepsOnlinePatients)


# --- patient records, exactly ---------------------------------------------------------------------


class _CreatesWithoutContacts(ReferencePatients):
    async def create_patient(self, ctx: CallContext, patient: NewPatient, request_id: str) -> PatientRecord:
        return await super().create_patient(ctx, replace(patient, contacts=()), request_id)


@fault("pvs.patients.read_back")
def creates_without_contacts() -> Adapter:
    """New patients are stored without their phone numbers and e-mail addresses (a second table never filled)."""
    return _build(patients=_CreatesWithoutContacts)


class _CreatesWithoutEmail(ReferencePatients):
    async def create_patient(self, ctx: CallContext, patient: NewPatient, request_id: str) -> PatientRecord:
        kept = tuple(c for c in patient.contacts if c.kind is not ContactKind.EMAIL)
        return await super().create_patient(ctx, replace(patient, contacts=kept), request_id)


@fault("pvs.patients.read_back")
def creates_without_email() -> Adapter:
    """The PVS has no e-mail field for patients: the address of a new patient is dropped."""
    return _build(patients=_CreatesWithoutEmail)


class _UppercaseNames(ReferencePatients):
    async def create_patient(self, ctx: CallContext, patient: NewPatient, request_id: str) -> PatientRecord:
        upper = replace(patient, given_name=patient.given_name.upper(), family_name=patient.family_name.upper())
        return await super().create_patient(ctx, upper, request_id)


@fault("pvs.patients.read_back")
def stores_names_in_capitals() -> Adapter:
    """Names of new patients are stored in capitals, as the PVS's old DOS forms did."""
    return _build(patients=_UppercaseNames)


class _AsciiNames(ReferencePatients):
    async def create_patient(self, ctx: CallContext, patient: NewPatient, request_id: str) -> PatientRecord:
        table = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue"})
        plain = replace(
            patient, given_name=patient.given_name.translate(table), family_name=patient.family_name.translate(table)
        )
        return await super().create_patient(ctx, plain, request_id)


@fault("pvs.patients.read_back")
def stores_names_without_umlauts() -> Adapter:
    """New patients' umlauts are transliterated (Jörg becomes Joerg): the record differs from what was given."""
    return _build(patients=_AsciiNames)


class _BirthDateDayBefore(ReferencePatients):
    async def create_patient(self, ctx: CallContext, patient: NewPatient, request_id: str) -> PatientRecord:
        shifted = replace(patient, birth_date=patient.birth_date - timedelta(days=1))
        return replace(await super().create_patient(ctx, shifted, request_id), birth_date=patient.birth_date)


@fault("pvs.patients.read_back")
def birth_date_stored_a_day_early() -> Adapter:
    """The birth date goes through local midnight converted to UTC: it is stored as the day before."""
    return _build(patients=_BirthDateDayBefore)


class _NoteOverwritesContacts(ReferencePatients):
    async def append_patient_note(self, ctx: CallContext, patient_id: str, line: str, request_id: str) -> None:
        await super().append_patient_note(ctx, patient_id, line, request_id)
        await self._db.run(
            lambda conn: conn.execute("DELETE FROM patient_contacts WHERE patient_id = ?", (patient_id,))
        )


@fault("pvs.patients.matched_unchanged")
def note_clears_contacts() -> Adapter:
    """The PVS's note API rewrites the whole master record: a matched patient loses the stored contacts."""
    return _build(patients=_NoteOverwritesContacts)


class _NoteReplacesContacts(ReferencePatients):
    async def append_patient_note(self, ctx: CallContext, patient_id: str, line: str, request_id: str) -> None:
        await super().append_patient_note(ctx, patient_id, line, request_id)
        found = [w.strip(".,;()") for w in line.split()]
        mobiles = [w for w in found if w.startswith("+49")]
        mails = [w for w in found if "@" in w]

        def overwrite(conn: sqlite3.Connection) -> None:
            for kind, values in (("mobile", mobiles), ("email", mails)):
                if values:
                    conn.execute("DELETE FROM patient_contacts WHERE patient_id = ? AND kind = ?", (patient_id, kind))
                    conn.execute("INSERT INTO patient_contacts VALUES (?, ?, ?)", (patient_id, kind, values[0]))

        await self._db.run(overwrite)


@fault("pvs.patients.matched_unchanged")
def booking_overwrites_contacts() -> Adapter:
    """Takes the new phone number and e-mail of a booking over into the stored record instead of the note."""
    return _build(patients=_NoteReplacesContacts)


# --- consent records, exactly ---------------------------------------------------------------------


class _DenialWrittenAsOpen(ReferencePatients):
    async def write_consent(
        self,
        ctx: CallContext,
        patient_id: str,
        state: ConsentState,
        evidence: ConsentEvidence | None,
        actor: ConsentActor,
    ) -> Consent:
        if state is ConsentState.DENIED:
            state, evidence = ConsentState.OPEN, None  # the PVS knows only "granted" or nothing
        return await super().write_consent(ctx, patient_id, state, evidence, actor)


@fault("pvs.consent.round_trip")
def denial_written_as_open() -> Adapter:
    """Stores a denial as no decision: the PVS has a consent tick box, not three states."""
    return _build(patients=_DenialWrittenAsOpen)


class _RevocationIgnored(ReferencePatients):
    async def write_consent(
        self,
        ctx: CallContext,
        patient_id: str,
        state: ConsentState,
        evidence: ConsentEvidence | None,
        actor: ConsentActor,
    ) -> Consent:
        if state is ConsentState.OPEN:
            return await self.read_consent(ctx, patient_id)  # "no decision" is not written over a decision
        return await super().write_consent(ctx, patient_id, state, evidence, actor)


@fault("pvs.consent.round_trip")
def reset_to_open_ignored() -> Adapter:
    """Writing 'open' over a recorded decision does nothing: a withdrawn decision stays in force."""
    return _build(patients=_RevocationIgnored)


class _EvidenceDropped(ReferencePatients):
    async def write_consent(
        self,
        ctx: CallContext,
        patient_id: str,
        state: ConsentState,
        evidence: ConsentEvidence | None,
        actor: ConsentActor,
    ) -> Consent:
        return await super().write_consent(ctx, patient_id, state, None, actor)


@fault("pvs.consent.round_trip")
def consent_without_evidence() -> Adapter:
    """Stores the decision without its evidence (when, how, which text): the record cannot prove it."""
    return _build(patients=_EvidenceDropped)


class _ActorAlwaysPartner(ReferencePatients):
    async def write_consent(
        self,
        ctx: CallContext,
        patient_id: str,
        state: ConsentState,
        evidence: ConsentEvidence | None,
        actor: ConsentActor,
    ) -> Consent:
        return await super().write_consent(ctx, patient_id, state, evidence, ConsentActor.PARTNER)


@fault("pvs.consent.round_trip")
def consent_actor_always_partner() -> Adapter:
    """Records every decision as the partner's, also those the practice entered at the desk."""
    return _build(patients=_ActorAlwaysPartner)


class _ConsentForEveryPartner(ReferencePatients):
    async def write_consent(
        self,
        ctx: CallContext,
        patient_id: str,
        state: ConsentState,
        evidence: ConsentEvidence | None,
        actor: ConsentActor,
    ) -> Consent:
        def partners(conn: sqlite3.Connection) -> list[str]:
            return [str(r[0]) for r in conn.execute("SELECT DISTINCT partner_id FROM consents")]

        written = await super().write_consent(ctx, patient_id, state, evidence, actor)
        for partner in await self._db.run(partners):
            if partner != ctx.partner_id:
                await super().write_consent(replace(ctx, partner_id=partner), patient_id, state, evidence, actor)
        return written


@fault("pvs.consent.round_trip")
def consent_written_for_every_partner() -> Adapter:
    """Writes a decision for every partner the PVS knows (one consent flag per patient, copied)."""
    return _build(patients=_ConsentForEveryPartner)


class _SearchConsentStale(ReferencePatients):
    async def list_patients_born_on(self, ctx: CallContext, birth_date: date) -> list[PatientRecord]:
        found = await super().list_patients_born_on(ctx, birth_date)
        return [replace(r, consent=ConsentState.GRANTED) if r.consent is ConsentState.DENIED else r for r in found]


@fault("consent.denied.invisible")
def search_reports_denial_as_grant() -> Adapter:
    """The patient search reads the consent flag of an older column: a denial shows as a grant."""
    return _build(patients=_SearchConsentStale)


class _ConsentByName(ReferencePatients):
    async def list_patients_born_on(self, ctx: CallContext, birth_date: date) -> list[PatientRecord]:
        found = await super().list_patients_born_on(ctx, birth_date)
        first: dict[tuple[str, str], ConsentState] = {}
        for record in sorted(found, key=lambda r: r.id):
            first.setdefault((record.given_name, record.family_name), record.consent)
        return [replace(r, consent=first[(r.given_name, r.family_name)]) for r in found]


@fault("consent.denied.namesake")
def consent_joined_by_name() -> Adapter:
    """The consent query joins on name and birth date instead of the patient's id: namesakes share one consent."""
    return _build(patients=_ConsentByName)


class _SharedIgnoresAfter(ReferencePatients):
    async def list_consented_patients(self, ctx: CallContext, after: str, limit: int) -> list[PatientRecord]:
        return await super().list_consented_patients(ctx, "", limit)


@fault("pvs.consent.shared_exact")
def shared_list_restarts_every_page() -> Adapter:
    """The shared-patients query ignores `after`: every page starts from the beginning again."""
    return _build(patients=_SharedIgnoresAfter)


class _SharedWithInactive(ReferencePatients):
    async def list_consented_patients(self, ctx: CallContext, after: str, limit: int) -> list[PatientRecord]:
        def read(conn: sqlite3.Connection) -> list[PatientRecord]:
            rows = conn.execute(
                "SELECT p.* FROM consents c JOIN patients p ON p.id = c.patient_id"
                " WHERE c.partner_id = ? AND c.state = 'granted' AND p.id > ? ORDER BY p.id LIMIT ?",
                (ctx.partner_id, after, limit),
            ).fetchall()
            return [stored_record(conn, r, ctx.partner_id) for r in rows]

        return await self._db.run(read)


@fault("pvs.consent.shared_exact")
def shared_list_with_inactive() -> Adapter:
    """The shared-patients query forgets the active condition (merged or moved records are listed)."""
    return _build(patients=_SharedWithInactive)


# --- calendar reads -------------------------------------------------------------------------------


class _EntriesStartingInHours(ReferenceCalendarData):
    async def list_busy_times(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        calendar = await self.list_calendars(ctx)
        tz = ZoneInfo((await self.get_practice(ctx)).time_zone)
        hours = {c.id: c.weekly_hours for c in calendar.columns}

        def in_hours(column_id: str, start: int) -> bool:
            local = datetime.fromtimestamp(start, tz)
            return any(
                s.weekday == local.isoweekday() and s.start <= local.time() < s.end for s in hours.get(column_id, ())
            )

        found = await super().list_busy_times(ctx, window, column_ids)
        return [
            ColumnIntervals(
                c.column_id,
                IntervalArray.of(
                    [(s, e) for s, e in c.intervals.pairs() if in_hours(c.column_id, s) or _reservation_like(e - s)]
                ),
            )
            for c in found
        ]


def _reservation_like(length: int) -> bool:
    return length >= 4 * 3600  # long blocks come from the reservation table, which the join does not touch


@fault("reader.busy.exact")
def busy_only_starting_in_hours() -> Adapter:
    """The entry query joins the weekly hours: appointments beginning before opening time are dropped."""
    return _build(calendar=_EntriesStartingInHours)


class _FirstColumnOnly(ReferenceCalendarData):
    async def list_busy_times(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        def second_columns(conn: sqlite3.Connection) -> set[tuple[str, int, int]]:
            rows = conn.execute(
                "SELECT e.column_id, e.start_utc, e.end_utc FROM calendar_entries e JOIN calendar_entries f"
                " ON f.start_utc = e.start_utc AND f.end_utc = e.end_utc AND f.kind = 'appointment'"
                " AND e.kind = 'appointment' AND f.id < e.id AND f.column_id <> e.column_id"
            ).fetchall()
            return {(str(r[0]), int(r[1]), int(r[2])) for r in rows}

        hidden = await self._db.run(second_columns)
        return [
            ColumnIntervals(
                c.column_id,
                IntervalArray.of([(s, e) for s, e in c.intervals.pairs() if (c.column_id, s, e) not in hidden]),
            )
            for c in await super().list_busy_times(ctx, window, column_ids)
        ]


@fault("reader.busy.exact")
def multi_column_appointment_in_first_column_only() -> Adapter:
    """An appointment over two columns (practitioner and room) is listed in its first column only."""
    return _build(calendar=_FirstColumnOnly)


class _NoPracticeWideClosedDays(ReferenceCalendarData):
    async def list_working_time_rules(self, ctx: CallContext, window: Interval) -> WorkingTimeRules:
        rules = await super().list_working_time_rules(ctx, window)
        return replace(rules, closed_days=tuple(d for d in rules.closed_days if d.column_id is not None))


@fault("reader.working_hours.closed_days")
def practice_wide_closed_days_lost() -> Adapter:
    """Exports closed days per column only: a holiday of the whole practice (no column) is lost."""
    return _build(calendar=_NoPracticeWideClosedDays)


class _ShiftsUntilExclusive(ReferenceCalendarData):
    async def list_working_time_rules(self, ctx: CallContext, window: Interval) -> WorkingTimeRules:
        rules = await super().list_working_time_rules(ctx, window)
        return replace(
            rules,
            shifts=tuple(
                replace(s, valid_until=s.valid_until - timedelta(days=1))
                for s in rules.shifts
                if s.valid_until > s.valid_from
            ),
        )


@fault("reader.working_hours.shifts")
def shifts_end_a_day_early() -> Adapter:
    """Reads a shift's last day as exclusive: one-day shifts vanish and longer ones lose their last day."""
    return _build(calendar=_ShiftsUntilExclusive)


class _AbsenceEndDateInclusive(ReferenceCalendarData):
    async def list_absences(self, ctx: CallContext, window: Interval, column_ids: Sequence[str]) -> list[Absence]:
        found = await super().list_absences(ctx, window, column_ids)
        return [
            Absence(a.column_id, Interval(a.interval.start, a.interval.end + timedelta(days=1)))
            if a.interval.end - a.interval.start >= timedelta(days=1)
            else a
            for a in found
        ]


@fault("reader.absences.listed")
def multi_day_absences_a_day_long() -> Adapter:
    """Holidays are stored with an inclusive end date and exported as if it were exclusive: one day too long."""
    return _build(calendar=_AbsenceEndDateInclusive)


class _UtcPractice(ReferenceCalendarData):
    async def get_practice(self, ctx: CallContext) -> PracticeProfile:
        return replace(await super().get_practice(ctx), time_zone="UTC")


@fault("reader.practice.profile")
def practice_in_utc() -> Adapter:
    """Reports the server's time zone (UTC) instead of the practice's."""
    return _build(calendar=_UtcPractice)


class _NoBuffers(ReferenceCalendarData):
    async def list_calendars(self, ctx: CallContext) -> Calendar:
        calendar = await super().list_calendars(ctx)
        return replace(
            calendar,
            appointment_types=tuple(replace(t, buffer=timedelta(0)) for t in calendar.appointment_types),
        )


@fault("reader.calendars.appointment_types")
def types_without_buffer() -> Adapter:
    """Exports appointment types without their follow-up buffer (Nachlaufzeit)."""
    return _build(calendar=_NoBuffers)


class _NoRooms(ReferenceCalendarData):
    async def list_calendars(self, ctx: CallContext) -> Calendar:
        calendar = await super().list_calendars(ctx)
        return replace(calendar, columns=tuple(replace(c, room_id=None) for c in calendar.columns))


@fault("reader.calendars.rooms")
def columns_without_rooms() -> Adapter:
    """Exports the columns without the room they are in."""
    return _build(calendar=_NoRooms)


class _ExtraNotListed(ReferenceCalendarData):
    def __init__(self, database: Database) -> None:
        super().__init__(ForgetfulDatabase(database, "DELETE FROM calendar_entries WHERE extra = 1"))


@fault("pvs.write.extra_idempotent")
def extra_appointments_not_busy() -> Adapter:
    """Extra appointments live in a table of their own that the busy-time query never reads."""
    return _build(calendar=_ExtraNotListed)


class _ClosedDaysForEveryone(ReferenceCalendarData):
    async def list_working_time_rules(self, ctx: CallContext, window: Interval) -> WorkingTimeRules:
        rules = await super().list_working_time_rules(ctx, window)
        return replace(rules, closed_days=tuple(replace(d, column_id=None) for d in rules.closed_days))


@fault("reader.working_hours.closed_days")
def closed_days_for_every_column() -> Adapter:
    """Exports closed days without their column: one practitioner's day off closes the whole practice."""
    return _build(calendar=_ClosedDaysForEveryone)


class _MobileAsPhone(ReferencePatients):
    async def create_patient(self, ctx: CallContext, patient: NewPatient, request_id: str) -> PatientRecord:
        contacts = tuple(
            replace(c, kind=ContactKind.PHONE) if c.kind is ContactKind.MOBILE else c for c in patient.contacts
        )
        return await super().create_patient(ctx, replace(patient, contacts=contacts), request_id)


@fault("pvs.patients.read_back")
def mobile_stored_as_landline() -> Adapter:
    """The PVS has one phone field: a new patient's mobile number is stored as a landline."""
    return _build(patients=_MobileAsPhone)


class _GrantedByDefault(ReferencePatients):
    async def read_consent(self, ctx: CallContext, patient_id: str) -> Consent:
        consent = await super().read_consent(ctx, patient_id)
        if consent.state is ConsentState.OPEN and consent.update_time is None:
            return replace(consent, state=ConsentState.GRANTED)  # "no objection on file" read as consent
        return consent


@fault("pvs.consent.round_trip")
def consent_granted_when_none_recorded() -> Adapter:
    """A partner without a consent record is read as granted (no objection on file means yes)."""
    return _build(patients=_GrantedByDefault)


class _ExtraDeleteAnswersNothing(ReferenceCalendarWriter):
    async def delete_appointment(self, ctx: CallContext, pvs_id: str) -> CalendarEntry | None:
        def extra(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT extra FROM calendar_entries WHERE id = ?", (pvs_id,)).fetchone()
            return row is not None and bool(row[0])

        was_extra = await self._db.run(extra)
        removed = await super().delete_appointment(ctx, pvs_id)
        return None if was_extra else removed


@fault("pvs.write.extra_appointment")
def extra_delete_answers_nothing() -> Adapter:
    """Deletes an extra appointment but answers 'not found' (its lookup searches regular slots only)."""
    return _build(writer=_ExtraDeleteAnswersNothing)


# --- issue 19, the rest: slots in every column, the written entry's source, announcements ----------


class _TypesInFirstColumn(ReferenceCalendarData):
    async def list_calendars(self, ctx: CallContext) -> Calendar:
        calendar = await super().list_calendars(ctx)
        return replace(
            calendar,
            appointment_types=tuple(replace(t, column_ids=t.column_ids[:1]) for t in calendar.appointment_types),
        )


@fault("reader.slots.complete_every_column")
def types_in_first_column_only() -> Adapter:
    """A type's columns are read with a scalar subquery that returns the first row only: a type allowed
    in both practitioners' columns is offered in the first, and dr-b's slots are missing."""
    return _build(calendar=_TypesInFirstColumn)


class _NoCategory(ReferenceCalendarWriter):
    async def write_appointment(self, ctx: CallContext, entry: CalendarEntry) -> WrittenEntry:
        return await super().write_appointment(ctx, replace(entry, category=""))


@fault("pvs.write.source")
def writes_without_category() -> Adapter:
    """The category is not mapped: online bookings are entered in the default colour, and staff cannot
    tell them from their own."""
    return _build(writer=_NoCategory)


class _FirstSourcePartner(ReferenceCalendarWriter):
    _source: str | None = None

    async def write_appointment(self, ctx: CallContext, entry: CalendarEntry) -> WrittenEntry:
        if self._source is None:
            self._source = entry.partner_id  # the technical user, resolved once and cached
        return await super().write_appointment(ctx, replace(entry, partner_id=self._source))


@fault("pvs.write.source")
def source_partner_of_first_write() -> Adapter:
    """The PVS user an entry is recorded under is looked up for the first partner and cached: every
    later booking shows that partner as its source."""
    return _build(writer=_FirstSourcePartner)


class _OneType(ReferenceCalendarWriter):
    async def write_appointment(self, ctx: CallContext, entry: CalendarEntry) -> WrittenEntry:
        return await super().write_appointment(ctx, replace(entry, appointment_type_id="kontrolle"))


@fault("pvs.write.source")
def writes_one_appointment_type() -> Adapter:
    """Every online booking is entered under the one type configured for online entries (the first),
    whatever type the partner booked."""
    return _build(writer=_OneType)


class _ExtraUnannounced(ReferenceCalendarWriter):
    def __init__(self, database: Database, changes: ChangeOutbox | None = None) -> None:
        super().__init__(database, changes)
        self._quiet = ReferenceCalendarWriter(database, None)

    async def write_appointment(self, ctx: CallContext, entry: CalendarEntry) -> WrittenEntry:
        start, end = from_datetime(entry.interval.start), from_datetime(entry.interval.end)

        def taken(conn: sqlite3.Connection) -> bool:
            query = "SELECT 1 FROM calendar_entries WHERE column_id = ? AND start_utc < ? AND end_utc > ? LIMIT 1"
            return conn.execute(query, (entry.column_id, end, start)).fetchone() is not None

        if await self._db.run(taken):  # the extra-appointment path is another procedure, without the publish
            return await self._quiet.write_appointment(ctx, entry)
        return await super().write_appointment(ctx, entry)


@fault("pvs.changes.announced")
def extra_appointments_unannounced() -> Adapter:
    """Extra appointments (Zusatztermine) are entered by a separate procedure that announces nothing:
    the gateway keeps offering their time."""
    return _build(writer=_ExtraUnannounced)


class _SourceFromDeletingCall(ReferenceCalendarWriter):
    async def delete_appointment(self, ctx: CallContext, pvs_id: str) -> CalendarEntry | None:
        removed = await super().delete_appointment(ctx, pvs_id)
        return None if removed is None else replace(removed, partner_id=ctx.partner_id)


@fault("pvs.write.source")
def source_partner_of_deleting_call() -> Adapter:
    """The delete answers with the partner of its own call (otv-partner-id) as the entry's source
    instead of the one stored: an entry cancelled for another partner names the wrong source."""
    return _build(writer=_SourceFromDeletingCall)


def reference() -> Adapter:
    """The reference PVS as the faults start from, without a fault (served by faulty servers)."""
    return _build()


# Faults of the adapter server rather than of the data access: (how `serve_adapters` is called,
# the case that must fail). The adapter behind them is `reference()`; they exist only remotely.
SERVER_FAULTS: dict[str, tuple[dict[str, float], str]] = {
    # A server whose idle watch stream never sends a heartbeat (as if the timer were never armed).
    "no_heartbeats": ({"heartbeat_seconds": 3600.0}, "pvs.changes.heartbeat"),
}


# --- harmless variants: must stay certified -------------------------------------------------------


class _ReversedPatients(ReferencePatients):
    async def list_patients_born_on(self, ctx: CallContext, birth_date: date) -> list[PatientRecord]:
        return list(reversed(await super().list_patients_born_on(ctx, birth_date)))


@uncaught("harmless: the order of patients born on one date is left open by the contract")
def patients_in_reverse_order() -> Adapter:
    """The patient search returns the newest record first."""
    return _build(patients=_ReversedPatients)


class _ReversedAbsences(ReferenceCalendarData):
    async def list_absences(self, ctx: CallContext, window: Interval, column_ids: Sequence[str]) -> list[Absence]:
        return list(reversed(await super().list_absences(ctx, window, column_ids)))


@uncaught("harmless: the order of absences is left open by the contract")
def absences_in_reverse_order() -> Adapter:
    """Absences come in storage order, newest first."""
    return _build(calendar=_ReversedAbsences)


class _PrefixedIds(ReferenceCalendarWriter):
    async def write_appointment(self, ctx: CallContext, entry: CalendarEntry) -> WrittenEntry:
        written = await super().write_appointment(ctx, entry)
        return replace(written, pvs_id=f"TERMIN-{int(written.pvs_id):08d}")

    async def delete_appointment(self, ctx: CallContext, pvs_id: str) -> CalendarEntry | None:
        if not pvs_id.startswith("TERMIN-"):
            return None
        return await super().delete_appointment(ctx, str(int(pvs_id.removeprefix("TERMIN-"))))


@uncaught("harmless: PVS ids are opaque to the gateway; any format that round-trips works")
def prefixed_entry_ids() -> Adapter:
    """Entry ids in the PVS's own format (TERMIN-00000042) instead of plain numbers."""
    return _build(writer=_PrefixedIds)


class _SlowCalendar(ReferenceCalendarData):
    async def list_busy_times(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        await asyncio.sleep(0.02)
        return await super().list_busy_times(ctx, window, column_ids)


class _SlowPatients(ReferencePatients):
    async def list_patients_born_on(self, ctx: CallContext, birth_date: date) -> list[PatientRecord]:
        await asyncio.sleep(0.02)
        return await super().list_patients_born_on(ctx, birth_date)


@uncaught("harmless: 20 ms more per calendar and patient read is slower but well within the time budget")
def slow_but_within_budget() -> Adapter:
    """Every busy-time read and patient search takes 20 ms longer (a remote PVS database)."""
    return _build(calendar=_SlowCalendar, patients=_SlowPatients)
