"""WriterService on a vendor's adapter server: the gateway's remote transport for calendar writes.

A gateway in front of a remote adapter keeps holds, idempotency and booking modes itself and only
asks the PVS to write or delete entries. Over the wire that is `BookAppointment` (the request id is
the gateway's reference, so a repeated write finds the first) and `CancelAppointment`. Holds are
the gateway's business, so their RPCs answer UNIMPLEMENTED here. The category that marks online
bookings in the PVS is this adapter server's own setting.
"""

from __future__ import annotations

from datetime import UTC, datetime

from otv_sdk.errors import InvalidArgument, NotFound, Unimplemented
from otv_sdk.models import Appointment, AppointmentState, Hold, Interval
from otv_sdk.ports import (
    AppointmentQuery,
    CalendarEntry,
    CalendarWriterPort,
    CallContext,
    Page,
    ReaderPort,
    SlotRequest,
    WriterPort,
)

__all__ = ["CalendarWriterService"]

_HOLDS = "holds are kept by the gateway, not by the adapter server"


class CalendarWriterService(WriterPort):
    def __init__(self, reader: ReaderPort, writer: CalendarWriterPort, category: str = "online") -> None:
        self._reader = reader
        self._writer = writer
        self.category = category

    async def book_appointment(self, ctx: CallContext, slot: SlotRequest) -> Appointment:
        if not ctx.request_id:
            raise InvalidArgument.field("request_id", "is required: it is the gateway's reference for the entry")
        calendar = await self._reader.list_calendars(ctx)
        kind = next((t for t in calendar.appointment_types if t.id == slot.appointment_type_id), None)
        if kind is None:
            raise InvalidArgument.field("appointment_type", "is not an appointment type of this practice")
        interval = Interval(slot.start, slot.start + kind.duration)
        entry = CalendarEntry(
            reference=ctx.request_id,
            column_id=slot.column_id,
            appointment_type_id=kind.id,
            interval=interval,
            patient_id=slot.patient_id,
            partner_id=ctx.partner_id,
            category=self.category,
        )
        written = await self._writer.write_appointment(ctx, entry)
        return _appointment(written.pvs_id, entry, AppointmentState.BOOKED, written.extra)

    async def cancel_appointment(self, ctx: CallContext, appointment_id: str, etag: str) -> Appointment:
        removed = await self._writer.delete_appointment(ctx, appointment_id)
        if removed is None:
            raise NotFound.field("name", "no such appointment")
        return _appointment(appointment_id, removed, AppointmentState.CANCELLED, False)

    async def hold_slot(self, ctx: CallContext, slot: SlotRequest) -> Hold:
        raise Unimplemented(_HOLDS)

    async def confirm_hold(self, ctx: CallContext, hold_id: str) -> Appointment:
        raise Unimplemented(_HOLDS)

    async def release_hold(self, ctx: CallContext, hold_id: str) -> None:
        raise Unimplemented(_HOLDS)

    async def reschedule_appointment(
        self, ctx: CallContext, appointment_id: str, etag: str, start: datetime, column_id: str | None
    ) -> Appointment:
        raise Unimplemented("the gateway moves appointments by writing the new one and deleting the old")

    async def get_appointment(self, ctx: CallContext, appointment_id: str) -> Appointment:
        raise Unimplemented("the gateway keeps the record of appointments booked through it")

    async def list_appointments(self, ctx: CallContext, query: AppointmentQuery) -> Page[Appointment]:
        raise Unimplemented("the gateway keeps the record of appointments booked through it")


def _appointment(pvs_id: str, entry: CalendarEntry, state: AppointmentState, extra: bool) -> Appointment:
    return Appointment(
        id=pvs_id,
        column_id=entry.column_id,
        appointment_type_id=entry.appointment_type_id,
        interval=entry.interval,
        patient_id=entry.patient_id,
        state=state,
        create_time=datetime.now(UTC).replace(microsecond=0),
        etag="",
        extra=extra,
    )
