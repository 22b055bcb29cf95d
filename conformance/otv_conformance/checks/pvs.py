"""The PVS contract: the calendar writer's two operations must be safe to repeat and never lose a booking.

These call the adapter's calendar writer the way the gateway does when it finishes bookings after a
crash (the same write again, the same delete again), through the same transport.
"""

from __future__ import annotations

import uuid

from otv_conformance.cases import Group, case, check
from otv_conformance.expectations import seconds, subtract
from otv_conformance.session import Session
from otv_sdk.models import Interval
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
