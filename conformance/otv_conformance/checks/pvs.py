"""The PVS contract: the calendar writer's two operations must be safe to repeat and never lose a booking.

These call the adapter's calendar writer the way the gateway does when it finishes bookings after a
crash (the same write again, the same delete again), through the same transport.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from otv_conformance.cases import Group, case, check
from otv_conformance.expectations import Spans, seconds, subtract
from otv_conformance.session import Session
from otv_sdk.models import (
    ConsentActor,
    ConsentEvidence,
    ConsentMethod,
    ConsentState,
    Contact,
    ContactKind,
    Interval,
    NewPatient,
    PatientRecord,
)
from otv_sdk.ports import CalendarEntry, CalendarWriterPort, CallContext, MatchOutcome, PatientDataPort, PatientQuery

G = Group.PVS


def _writer(session: Session) -> CalendarWriterPort:
    writer = session.adapter.calendar_writer
    check(writer is not None, "the adapter declares the writer capability but has no calendar writer")
    assert writer is not None
    return writer


def _entry(session: Session, start: str, end: str, column_id: str = "dr-b") -> CalendarEntry:
    return CalendarEntry(
        reference=f"conformance-{uuid.uuid4()}",
        column_id=column_id,
        appointment_type_id="kontrolle",
        interval=Interval(session.at(start), session.at(end)),
        patient_id=session.placed.patient("p-karl").id,  # the PVS's own id: this is the PVS-side contract
        partner_id=session.partner_a,
        category="online",
    )


async def _present(session: Session, entry: CalendarEntry) -> bool:
    window = session.days(entry.interval.start.astimezone(session.placed.tz).date(), 1)
    busy = await session.pvs_busy(entry.column_id, window)
    return not subtract([(seconds(entry.interval.start), seconds(entry.interval.end))], busy)


@case("pvs.write.idempotent", "PV-1", G)
async def write_idempotent(session: Session) -> None:
    """Writing one reference twice yields one entry: after one delete the time is free in the PVS."""
    writer = _writer(session)
    entry = _entry(session, "A+42 09:00", "A+42 09:20")
    first = await writer.write_appointment(session.pvs_context(), entry)
    second = await writer.write_appointment(session.pvs_context(), entry)
    check(first.pvs_id == second.pvs_id, "the repeated write returned another PVS id")
    await writer.delete_appointment(session.pvs_context(), first.pvs_id)
    check(not await _present(session, entry), "after deleting the entry, the time is still busy: it was written twice")


@case("pvs.write.extra_appointment", "PV-2", G)
async def write_extra(session: Session) -> None:
    """A write into time that is already taken is entered as an extra appointment and kept."""
    writer = _writer(session)
    blocking = _entry(session, "A+43 09:00", "A+43 09:30")
    await writer.write_appointment(session.pvs_context(), blocking)
    late = _entry(session, "A+43 09:10", "A+43 09:30")
    written = await writer.write_appointment(session.pvs_context(), late)
    check(written.extra, "the overlapping write was not reported as an extra appointment (Zusatztermin)")
    removed = await writer.delete_appointment(session.pvs_context(), written.pvs_id)
    check(removed is not None, "the extra appointment could not be found to delete: it was not kept")


@case("pvs.delete.repeatable", "PV-3", G)
async def delete_twice(session: Session) -> None:
    """The first delete returns the entry and frees the time; the second finds nothing."""
    writer = _writer(session)
    entry = _entry(session, "A+44 10:00", "A+44 10:20")
    written = await writer.write_appointment(session.pvs_context(), entry)
    check(await _present(session, entry), "the written entry is not in the PVS calendar")
    first = await writer.delete_appointment(session.pvs_context(), written.pvs_id)
    check(first is not None, "the first delete found nothing")
    check(not await _present(session, entry), "the deleted entry is still busy")
    second = await writer.delete_appointment(session.pvs_context(), written.pvs_id)
    check(second is None, "the second delete returned an entry")


@case("pvs.rules.overlapping", "PV-4", Group.READER)
async def rules_overlapping(session: Session) -> None:
    """Rules for a window inside the A+14 to A+18 shift include that shift: the gateway reads rules
    for its whole horizon, so a shift that began before it (a long one) would otherwise be lost."""
    data = session.adapter.calendar
    check(data is not None, "the adapter serves no calendar data")
    assert data is not None
    inside = session.days(session.day("A+16"), 1)
    rules = await data.list_working_time_rules(session.pvs_context(), inside)
    found = [s for s in rules.shifts if s.column_id == "dr-a" and s.valid_from == session.day("A+14")]
    check(bool(found), "a shift from A+14 to A+18 is missing from the rules of a window on A+16")


@case("pvs.patients.create_idempotent", "PV-5", Group.PATIENTS)
async def create_idempotent(session: Session) -> None:
    """The same creation sent twice (a retry, or two gateway replicas deciding the same) is one patient."""
    patients = session.adapter.patients
    check(patients is not None, "the adapter declares patient lookup but serves no patient data")
    assert patients is not None
    born = session.day("A+0") - timedelta(days=365 * 40 + 17)
    new = NewPatient(given_name="Wiederholt", family_name=f"Versuch-{uuid.uuid4().hex[:8]}", birth_date=born)
    request_id = f"conformance-{uuid.uuid4()}"
    first = await patients.create_patient(session.pvs_context(), new, request_id)
    second = await patients.create_patient(session.pvs_context(), new, request_id)
    check(first.id == second.id, "the repeated creation returned another patient")
    same = [
        r for r in await patients.list_patients_born_on(session.pvs_context(), born) if r.family_name == new.family_name
    ]
    check(len(same) == 1, f"the repeated creation made {len(same)} patients")


# --- exact checks of the data contract ------------------------------------------------------------
#
# Each writes on the day after a daylight-saving switch (S+n: summer time, F+n: winter time), so
# every run writes in both UTC offsets of the practice's zone whatever the date of the run.


def _show(session: Session, start: int, end: int) -> str:
    tz = session.placed.tz
    a = datetime.fromtimestamp(start, UTC)
    b = datetime.fromtimestamp(end, UTC)
    return f"{a.astimezone(tz).isoformat()} to {b.astimezone(tz).isoformat()}"


def _show_all(session: Session, spans: Spans) -> str:
    return "[" + ", ".join(_show(session, s, e) for s, e in spans) + "]" if spans else "nothing"


async def _entries(session: Session, column_id: str, day: date) -> Spans:
    """The column's entries on that local day as the PVS lists them: one pair per entry, unmerged."""
    return sorted(await session.pvs_busy(column_id, session.days(day, 1)))


def _pair(entry: CalendarEntry) -> tuple[int, int]:
    return seconds(entry.interval.start), seconds(entry.interval.end)


def _local_day(session: Session, entry: CalendarEntry) -> date:
    return entry.interval.start.astimezone(session.placed.tz).date()


async def _count(session: Session, entry: CalendarEntry, column_id: str | None = None) -> int:
    return (await _entries(session, column_id or entry.column_id, _local_day(session, entry))).count(_pair(entry))


@case("pvs.write.exact", "PV-6", G)
async def write_exact(session: Session) -> None:
    """A write into free time, in summer (S+2, dr-a) and winter time (F+2, dr-b), is listed exactly as
    asked (start, end, column, not in the type's other column), is regular, and a delete returns it."""
    writer = _writer(session)
    for day, column_id, other in (("S+2", "dr-a", "dr-b"), ("F+2", "dr-b", "dr-a")):
        entry = _entry(session, f"{day} 10:05", f"{day} 10:30", column_id)
        asked = _show(session, *_pair(entry))
        written = await writer.write_appointment(session.pvs_context(), entry)
        try:
            got = await _entries(session, column_id, _local_day(session, entry))
            check(
                _pair(entry) in got,
                f"written {asked} in {column_id}; the PVS lists {_show_all(session, got)} in {column_id} that day",
            )
            check(
                await _count(session, entry, other) == 0,
                f"written {asked} in {column_id}; it is listed in {other} too (the type allows both columns)",
            )
            check(not written.extra, f"the write of {asked} into free time in {column_id} was reported as extra")
        finally:
            removed = await writer.delete_appointment(session.pvs_context(), written.pvs_id)
        check(removed is not None, f"the delete of {asked} in {column_id} found nothing")
        assert removed is not None
        check(
            (removed.column_id, _pair(removed)) == (column_id, _pair(entry)),
            f"the delete of {asked} in {column_id} returned {_show(session, *_pair(removed))} in {removed.column_id}",
        )
        check(await _count(session, entry) == 0, f"after its delete, {asked} is still listed in {column_id}")


@case("pvs.write.source", "PV-12", G)
async def write_source(session: Session) -> None:
    """Writes for partner A (S+6, a check-up) and partner B (F+6, a first consultation) are stored with
    their appointment type, patient, reference, source partner and category: the delete, made for the
    other partner, returns the entry as written (remotely: DeleteCalendarEntryResponse)."""
    writer = _writer(session)
    writes = (
        ("S+6", session.partner_a, session.partner_b, "dr-a", "kontrolle", "11:20"),
        ("F+6", session.partner_b, session.partner_a, "dr-b", "erstberatung", "11:30"),
    )
    for day, partner, other, column_id, type_id, end in writes:
        entry = _entry(session, f"{day} 11:00", f"{day} {end}", column_id)
        entry = replace(entry, partner_id=partner, appointment_type_id=type_id)
        written = await writer.write_appointment(CallContext(partner_id=partner, request_id=str(uuid.uuid4())), entry)
        removed = await writer.delete_appointment(
            CallContext(partner_id=other, request_id=str(uuid.uuid4())), written.pvs_id
        )
        asked = f"{_show(session, *_pair(entry))} in {column_id}"
        check(removed is not None, f"the delete of {asked} found nothing")
        assert removed is not None
        for what, want, got in (
            ("source partner", entry.partner_id, removed.partner_id),
            ("category", entry.category, removed.category),
            ("appointment type", entry.appointment_type_id, removed.appointment_type_id),
            ("patient", entry.patient_id, removed.patient_id),
            ("reference", entry.reference, removed.reference),
        ):
            check(
                got == want,
                f"written {asked} for {partner} with {what} {want!r}; deleted for {other}, the PVS returned {got!r}",
            )


@case("pvs.delete.exact", "PV-7", G)
async def delete_exact(session: Session) -> None:
    """Deleting one of two overlapping entries (a regular one and an extra one, S+3 and F+3) removes
    exactly that entry: the overlapping neighbour stays, with its start and end."""
    writer = _writer(session)
    for day in ("S+3", "F+3"):
        first = _entry(session, f"{day} 09:00", f"{day} 09:30", "dr-a")
        second = _entry(session, f"{day} 09:15", f"{day} 09:45", "dr-a")
        third = _entry(session, f"{day} 09:20", f"{day} 09:40", "dr-a")
        w1 = await writer.write_appointment(session.pvs_context(), first)
        w2 = await writer.write_appointment(session.pvs_context(), second)
        check(
            w2.extra, f"{_show(session, *_pair(second))} over {_show(session, *_pair(first))} was not reported as extra"
        )
        await writer.delete_appointment(session.pvs_context(), w2.pvs_id)
        check(
            await _count(session, second) == 0,
            f"the deleted extra entry {_show(session, *_pair(second))} is still listed",
        )
        check(
            await _count(session, first) == 1,
            f"deleting the extra entry {_show(session, *_pair(second))} also removed {_show(session, *_pair(first))}",
        )
        w3 = await writer.write_appointment(session.pvs_context(), third)
        await writer.delete_appointment(session.pvs_context(), w1.pvs_id)
        check(await _count(session, first) == 0, f"the deleted entry {_show(session, *_pair(first))} is still listed")
        check(
            await _count(session, third) == 1,
            f"deleting {_show(session, *_pair(first))} also removed the overlapping {_show(session, *_pair(third))}",
        )
        await writer.delete_appointment(session.pvs_context(), w3.pvs_id)
        check(
            await _count(session, third) == 0,
            f"the deleted extra entry {_show(session, *_pair(third))} is still listed",
        )


@case("pvs.write.extra_idempotent", "PV-1", G)
async def write_extra_idempotent(session: Session) -> None:
    """An extra appointment written twice under one reference (S+4 and F+4) is one entry with one id."""
    writer = _writer(session)
    for day in ("S+4", "F+4"):
        blocking = _entry(session, f"{day} 09:00", f"{day} 09:30", "dr-a")
        extra = _entry(session, f"{day} 09:10", f"{day} 09:40", "dr-a")
        held = await writer.write_appointment(session.pvs_context(), blocking)
        first = await writer.write_appointment(session.pvs_context(), extra)
        second = await writer.write_appointment(session.pvs_context(), extra)
        shown = _show(session, *_pair(extra))
        try:
            check(first.pvs_id == second.pvs_id, f"the repeated extra write of {shown} returned another PVS id")
            check(first.extra and second.extra, f"the extra write of {shown} was not reported as extra both times")
            count = await _count(session, extra)
            check(
                count == 1, f"the extra appointment {shown} written twice under one reference is listed {count} times"
            )
        finally:
            await writer.delete_appointment(session.pvs_context(), first.pvs_id)
            await writer.delete_appointment(session.pvs_context(), second.pvs_id)
            await writer.delete_appointment(session.pvs_context(), held.pvs_id)


def _patients_port(session: Session) -> PatientDataPort:
    patients = session.adapter.patients
    check(patients is not None, "the adapter declares patient lookup but serves no patient data")
    assert patients is not None
    return patients


def _new_record(session: Session, given: str) -> NewPatient:
    token = "".join(c for c in uuid.uuid4().hex if c.isalpha())[:6].title()
    born = session.day("A+0") - timedelta(days=365 * 30 + secrets.randbelow(3000))
    return NewPatient(
        given_name=given,
        family_name=f"Rücklesung-{session.placed.values.tag}{token}",
        birth_date=born,
        contacts=(
            Contact(ContactKind.MOBILE, f"+49151{secrets.randbelow(10**8):08d}"),
            Contact(ContactKind.EMAIL, f"{secrets.token_hex(5)}@sandbox.example"),
        ),
    )


def _contacts(contacts: tuple[Contact, ...]) -> list[tuple[str, str]]:
    return sorted((c.kind.value, c.value) for c in contacts)


def _fields(record: PatientRecord | NewPatient) -> str:
    return f"{record.given_name} {record.family_name}, born {record.birth_date}, contacts {_contacts(record.contacts)}"


@case("pvs.patients.read_back", "PV-8", Group.PATIENTS)
async def patient_read_back(session: Session) -> None:
    """A created patient is read back by birth date with every field as asked: names, birth date,
    contacts, active, open consent, created online by the calling partner."""
    patients = _patients_port(session)
    new = _new_record(session, "Jörg")
    created = await patients.create_patient(session.pvs_context(), new, f"conformance-{uuid.uuid4()}")
    found = [
        r for r in await patients.list_patients_born_on(session.pvs_context(), new.birth_date) if r.id == created.id
    ]
    check(len(found) == 1, f"the patient created as {_fields(new)} is not found by birth date {new.birth_date}")
    record = found[0]
    check(
        (record.given_name, record.family_name, record.birth_date, _contacts(record.contacts))
        == (new.given_name, new.family_name, new.birth_date, _contacts(new.contacts)),
        f"created {_fields(new)}; read back {_fields(record)}",
    )
    check(record.active, "the created patient is read back as inactive")
    check(
        record.created_online_by == session.partner_a,
        f"created online by {session.partner_a}; read back as created by {record.created_online_by!r}",
    )
    check(record.consent is ConsentState.OPEN, f"a new patient's consent is read back as {record.consent.value}")


@case("pvs.patients.matched_unchanged", "PV-9", Group.PATIENTS)
async def matched_unchanged(session: Session) -> None:
    """A patient matched with new contact details keeps the stored record unchanged (names, birth
    date, contacts); the new details only reach the note."""
    patients = _patients_port(session)
    planted = session.placed.patient("p-erika")
    born = planted.birth_date.full() if planted.birth_date else None
    assert born is not None
    new_mobile = Contact(ContactKind.MOBILE, f"+49151{secrets.randbelow(10**8):08d}")
    new_mail = Contact(ContactKind.EMAIL, f"{secrets.token_hex(5)}@sandbox.example")
    query = PatientQuery(planted.given_name, planted.family_name, born, (new_mobile, new_mail))
    _, outcome = await session.lookup(query)
    check(outcome is MatchOutcome.MATCHED, f"Erika with new contacts: outcome {outcome.name}, expected MATCHED")
    records = [r for r in await patients.list_patients_born_on(session.pvs_context(), born) if r.id == planted.id]
    check(len(records) == 1, f"the planted patient {planted.id} is not found by birth date {born}")
    record = records[0]
    want = f"{planted.given_name} {planted.family_name}, born {born}, contacts {_contacts(planted.contacts)}"
    check(
        (record.given_name, record.family_name, record.birth_date, _contacts(record.contacts))
        == (planted.given_name, planted.family_name, born, _contacts(planted.contacts)),
        f"stored {want}; after the match with new contacts: {_fields(record)}",
    )


@case("pvs.consent.round_trip", "CO-5", Group.CONSENT)
async def consent_round_trip(session: Session) -> None:
    """Every consent state written for one partner reads back as written, with its evidence and
    actor, and leaves the other partner's consent open."""
    consents = session.adapter.consents
    check(consents is not None, "the adapter declares consent but serves no consent data")
    assert consents is not None
    patients = _patients_port(session)
    created = await patients.create_patient(
        session.pvs_context(), _new_record(session, "Konsens"), f"conformance-{uuid.uuid4()}"
    )
    ctx_b = CallContext(partner_id=session.partner_b, request_id=str(uuid.uuid4()))
    decided = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    steps = (
        (ConsentState.GRANTED, ConsentActor.PARTNER, ConsentMethod.ONLINE_FORM),
        (ConsentState.DENIED, ConsentActor.PRACTICE, ConsentMethod.PAPER),
        (ConsentState.OPEN, ConsentActor.PRACTICE, None),
        (ConsentState.GRANTED, ConsentActor.PRACTICE, ConsentMethod.VERBAL),
    )
    for state, actor, method in steps:
        evidence = None if method is None else ConsentEvidence(decided, method, f"v{session.placed.values.run}")
        await consents.write_consent(session.pvs_context(), created.id, state, evidence, actor)
        read = await consents.read_consent(session.pvs_context(), created.id)
        written = f"{state.value} by {actor.value} with {evidence}"
        check(read.state is state, f"wrote {written}; read back {read.state.value}")
        check(read.evidence == evidence, f"wrote {written}; read back evidence {read.evidence}")
        check(read.set_by is actor, f"wrote {written}; read back as set by {read.set_by}")
        other = await consents.read_consent(ctx_b, created.id)
        check(other.state is ConsentState.OPEN, f"wrote {written} for partner A; partner B reads {other.state.value}")
        records = [
            r
            for r in await patients.list_patients_born_on(session.pvs_context(), created.birth_date or date.min)
            if r.id == created.id
        ]
        check(
            len(records) == 1 and records[0].consent is state,
            f"wrote {written}; the patient search reads consent {[r.consent.value for r in records]}",
        )


@case("pvs.sandbox.reset", "PV-11", G)
async def sandbox_reset(session: Session) -> None:
    """The sandbox reset leaves nothing: no calendar entries in the whole window, no patients (those
    of the scenario and those created online), none shared. The scenario is loaded again afterwards."""
    sandbox = session.adapter.sandbox
    data = session.adapter.calendar
    patients = session.adapter.patients
    check(sandbox is not None and data is not None, "the adapter has no sandbox or no calendar")
    assert sandbox is not None
    assert data is not None
    ctx = session.pvs_context()
    await sandbox.reset(ctx)
    try:
        left = [c for c in await data.list_busy_times(ctx, session.placed.window, []) if c.intervals.pairs()]
        check(not left, f"after the reset, entries are left in {[c.column_id for c in left]}")
        if patients is not None:
            dates = {p.birth_date.full() for p in session.placed.scenario.patients if p.birth_date}
            dates.add(date(1991, 4, 1))  # the suite's new patients
            for born in sorted(d for d in dates if d is not None):
                found = await patients.list_patients_born_on(ctx, born)
                check(not found, f"after the reset, {len(found)} patient(s) born on {born} are left")
            shared = await patients.list_consented_patients(ctx, "", 100)
            check(not shared, f"after the reset, {len(shared)} patient(s) are still listed as shared")
    finally:
        await sandbox.load_scenario(ctx, session.placed.scenario)


@case("pvs.consent.shared_exact", "CO-4", Group.CONSENT)
async def shared_exact(session: Session) -> None:
    """At the adapter, the consented-patients list holds exactly active patients who granted the
    calling partner, by id ascending and paged by `after`: the scenario's granted ones, not the denied."""
    patients = _patients_port(session)
    ctx = session.pvs_context()
    listed = await patients.list_consented_patients(ctx, "", 1000)
    ids = [r.id for r in listed]
    check(ids == sorted(set(ids)), f"the consented patients are not listed once each by id ascending: {ids}")
    wrong = [f"{r.id} ({'active' if r.active else 'inactive'}, {r.consent.value})" for r in listed]
    wrong = [w for r, w in zip(listed, wrong, strict=True) if not r.active or r.consent is not ConsentState.GRANTED]
    check(not wrong, f"listed as consented: {wrong}")
    granted = {
        p.id
        for p in session.placed.scenario.patients
        if p.active and (session.partner_a, ConsentState.GRANTED) in p.consents
    }
    denied = {  # denied A, or inactive; others may have granted during the run (consent cases)
        p.id
        for p in session.placed.scenario.patients
        if not p.active or (session.partner_a, ConsentState.DENIED) in p.consents
    }
    check(granted <= set(ids), f"granted {sorted(granted)}; missing from the list: {sorted(granted - set(ids))}")
    check(not denied & set(ids), f"listed without a grant: {sorted(denied & set(ids))}")
    if len(ids) >= 2:
        page = [r.id for r in await patients.list_consented_patients(ctx, ids[0], 1)]
        check(page == [ids[1]], f"the page after {ids[0]} with limit 1 is {page}, expected {[ids[1]]}")
