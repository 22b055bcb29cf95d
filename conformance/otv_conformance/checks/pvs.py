"""The PVS contract: the calendar writer's two operations must be safe to repeat and never lose a booking.

These call the adapter's calendar writer the way the gateway does when it finishes bookings after a
crash (the same write again, the same delete again), through the same transport.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from otv_conformance.cases import Group, case, check
from otv_conformance.expectations import seconds, subtract
from otv_conformance.session import Session
from otv_sdk.models import Interval, NewPatient
from otv_sdk.ports import CalendarEntry, CalendarWriterPort

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
