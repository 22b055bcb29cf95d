"""gRPC servicers for the four services, over any way of finding a practice's adapter.

The gateway and a vendor's remote adapter server both expose the same contract; they differ only
in how a call is attributed to a partner (`Identify`) and how a practice id becomes an `Adapter`
(`AdapterResolver`). Everything between is here once: parse and validate the request, resolve the
adapter, check it has the port, call it within the caller's deadline, convert the answer, and turn
every failure into a clear status. An adapter that raises something unexpected produces INTERNAL
with an error id, and its message is not logged (it may hold personal data).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, NoReturn, Protocol, TypeAlias, TypeVar

import grpc

from otv.v1 import (
    consent_service_pb2,
    consent_service_pb2_grpc,
    patient_lookup_service_pb2,
    patient_lookup_service_pb2_grpc,
    reader_service_pb2,
    reader_service_pb2_grpc,
    sandbox_service_pb2,
    sandbox_service_pb2_grpc,
    time_pb2,
    writer_service_pb2,
    writer_service_pb2_grpc,
)
from otv_sdk import conversion as cv
from otv_sdk.changes import ChangeEvent
from otv_sdk.errors import InvalidArgument, OtvError, Unimplemented
from otv_sdk.freshness import DATA_AGE_METADATA_KEY, collect_data_age
from otv_sdk.limits import MAX_COLUMNS, MAX_CONTACTS, MAX_REQUEST_ID
from otv_sdk.models import AdapterInfo, Calendar, Capability, ColumnIntervals, Interval, Practice, PracticeProfile, Slot
from otv_sdk.ports import (
    Adapter,
    AppointmentQuery,
    CallContext,
    ConsentPort,
    PageRequest,
    PatientLookupPort,
    PatientQuery,
    ReaderPort,
    SlotQuery,
    SlotRequest,
    WriterPort,
)
from otv_sdk.resources import parse_practice_child
from otv_sdk.status import error_to_status
from otv_sdk.timeline import from_datetime

__all__ = [
    "AdapterResolver",
    "Identify",
    "ServicerBase",
    "abort_for",
    "add_sandbox_servicer",
    "add_servicers",
    "validate_request_id",
]

log = logging.getLogger("otv.servicers")

T = TypeVar("T")
_ServicerContext: TypeAlias = grpc.aio.ServicerContext[Any, Any]

_PackedRead = Callable[[CallContext, Interval, Sequence[str]], Awaitable[list[ColumnIntervals]]]


class AdapterResolver(Protocol):
    """Finds the adapter for a practice; raises NotFound (or PermissionDenied) naming `field`."""

    async def resolve(self, practice_id: str, ctx: CallContext, field: str) -> Adapter: ...


class Identify(Protocol):
    """Attributes a call to a partner; raises Unauthenticated if it cannot."""

    def __call__(self, context: _ServicerContext, request_id: str | None) -> CallContext: ...


def deadline_of(context: _ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def validate_request_id(value: str) -> str:
    """The idempotency key of a mutating request, or INVALID_ARGUMENT naming `request_id`."""
    if not value:
        raise InvalidArgument.field("request_id", "is required on every mutating request")
    if len(value) > MAX_REQUEST_ID or not value.isascii() or not value.isprintable():
        raise InvalidArgument.field("request_id", f"must be 1-{MAX_REQUEST_ID} printable ASCII characters")
    return value


async def abort_for(context: _ServicerContext, method: str, error: Exception) -> NoReturn:
    """End the call with the status `error` stands for; never with the exception's own text.

    Typed errors keep their code and message; a timeout is DEADLINE_EXCEEDED; anything else is a
    bug on the server's side (INTERNAL with an error id), logged without its message, which may
    hold personal data."""
    if isinstance(error, OtvError):
        await context.abort_with_status(error_to_status(error))
    if isinstance(error, TimeoutError):
        await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the practice system did not answer in time")
    error_id = secrets.token_hex(6)
    frames = "".join(traceback.format_tb(error.__traceback__))
    log.error("unexpected %s in %s (error id %s)\n%s", type(error).__name__, method, error_id, frames)
    await context.abort(grpc.StatusCode.INTERNAL, f"the practice system failed to answer (error id {error_id})")
    raise AssertionError("abort always raises")  # pragma: no cover


class ServicerBase:
    """Runs one call: who is calling, its deadline, and errors turned into rich statuses. The
    gateway's own services (snapshot uploads, connectors) are built on it too."""

    def __init__(self, resolver: AdapterResolver, identify: Identify) -> None:
        self._resolver = resolver
        self._identify = identify

    async def _run(
        self,
        context: _ServicerContext,
        method: str,
        handler: Callable[[CallContext], Awaitable[T]],
        request_id: str | None = None,
    ) -> T:
        """Run handler with the caller's context; request_id is given (maybe empty) for mutations."""
        try:
            ctx = self._identify(context, None if request_id is None else validate_request_id(request_id))
            with collect_data_age() as age:
                async with asyncio.timeout(ctx.time_remaining()):
                    result = await handler(ctx)
            if age.seconds is not None:  # answered from a last known state, not live (freshness.py)
                context.set_trailing_metadata(((DATA_AGE_METADATA_KEY, str(int(age.seconds))),))
            return result
        except Exception as error:
            await abort_for(context, method, error)
        raise AssertionError("abort always raises")  # pragma: no cover

    async def _adapter(self, practice_id: str, ctx: CallContext, field: str) -> Adapter:
        return await self._resolver.resolve(practice_id, ctx, field)


def _need(port: T | None, what: str) -> T:
    if port is None:
        raise Unimplemented(f"this practice's PVS adapter does not support {what}")
    return port


def _reader(adapter: Adapter) -> ReaderPort:
    return _need(adapter.reader, "reading the calendar")


async def _checked_columns(
    reader: ReaderPort, ctx: CallContext, requested: Sequence[str], field: str = "columns"
) -> tuple[str, ...]:
    """The requested column ids, or all of them; an unknown one is INVALID_ARGUMENT naming its index."""
    known = (await reader.list_calendars(ctx)).column_ids()
    if not requested:
        return known
    lookup = frozenset(known)
    for index, column_id in enumerate(requested):
        if column_id not in lookup:
            raise InvalidArgument.field(f"{field}[{index}]", "is not a column of this practice")
    return tuple(requested)


async def _pack(
    practice_id: str, window: Interval, result: Sequence[ColumnIntervals]
) -> list[time_pb2.PackedIntervals]:
    """Clip to the window (adapters should, the edge makes sure) and pack relative to its start.

    A few columns at a time: 24 months of a busy column take ~0.15 ms, a whole practice ~3 ms,
    which would hold the event loop (and every other partner's call) in one piece."""
    lo, hi = from_datetime(window.start), from_datetime(window.end)
    packed = []
    for index, c in enumerate(result):
        if index and index % _COLUMNS_PER_STEP == 0:
            await asyncio.sleep(0)
        packed.append(
            cv.pack_intervals(practice_id, window.start, ColumnIntervals(c.column_id, c.intervals.clipped(lo, hi)))
        )
    return packed


async def _slots_to_proto(practice_id: str, slots: Sequence[Slot]) -> list[reader_service_pb2.Slot]:
    """A page of up to 1000 slots, a few hundred at a time (the whole page takes ~1.5 ms)."""
    converted: list[reader_service_pb2.Slot] = []
    for at in range(0, len(slots), _SLOTS_PER_STEP):
        if at:
            await asyncio.sleep(0)
        converted.extend(cv.slot_to_proto(practice_id, slot) for slot in slots[at : at + _SLOTS_PER_STEP])
    return converted


_COLUMNS_PER_STEP = 5
_SLOTS_PER_STEP = 250


class ReaderServicer(ServicerBase, reader_service_pb2_grpc.ReaderServiceServicer):
    def __init__(self, resolver: AdapterResolver, identify: Identify) -> None:
        super().__init__(resolver, identify)
        self._calendars: dict[str, tuple[Calendar, reader_service_pb2.ListCalendarsResponse]] = {}
        self._practices: dict[
            str, tuple[PracticeProfile, frozenset[Capability], AdapterInfo, reader_service_pb2.GetPracticeResponse]
        ] = {}

    async def GetPractice(
        self, request: reader_service_pb2.GetPracticeRequest, context: _ServicerContext
    ) -> reader_service_pb2.GetPracticeResponse:
        async def handle(ctx: CallContext) -> reader_service_pb2.GetPracticeResponse:
            practice_id = cv.practice_from_parent(request.name, "name")
            adapter = await self._adapter(practice_id, ctx, "name")
            profile = await _reader(adapter).get_practice(ctx)
            capabilities = adapter.capabilities
            made = self._practices.get(practice_id)
            if made is not None and made[0] is profile and made[1] == capabilities and made[2] is adapter.info:
                return made[3]  # converted once while the profile is the same object (a kept one)
            practice = Practice(
                id=practice_id,
                display_name=profile.display_name,
                time_zone=profile.time_zone,
                capabilities=capabilities,
                adapter=adapter.info,
            )
            response = reader_service_pb2.GetPracticeResponse(practice=cv.practice_to_proto(practice))
            self._practices[practice_id] = (profile, capabilities, adapter.info, response)
            return response

        return await self._run(context, "GetPractice", handle)

    async def ListCalendars(
        self, request: reader_service_pb2.ListCalendarsRequest, context: _ServicerContext
    ) -> reader_service_pb2.ListCalendarsResponse:
        async def handle(ctx: CallContext) -> reader_service_pb2.ListCalendarsResponse:
            practice_id = cv.practice_from_parent(request.parent)
            adapter = await self._adapter(practice_id, ctx, "parent")
            calendar = await _reader(adapter).list_calendars(ctx)
            # The most frequent call: a calendar the reader keeps (the same object) is converted once.
            kept = self._calendars.get(practice_id)
            if kept is None or kept[0] is not calendar:
                response = reader_service_pb2.ListCalendarsResponse(**cv.calendar_to_proto(practice_id, calendar))  # type: ignore[arg-type]
                kept = self._calendars[practice_id] = (calendar, response)
            return kept[1]

        return await self._run(context, "ListCalendars", handle)

    async def _packed_window(
        self,
        context: _ServicerContext,
        method: str,
        request: Any,
        read: Callable[[ReaderPort], _PackedRead],
    ) -> list[time_pb2.PackedIntervals]:
        """The shared body of ListWorkingHours and GetFreeTime: per-column intervals, packed."""

        async def handle(ctx: CallContext) -> list[time_pb2.PackedIntervals]:
            practice_id, window, columns = _window_request(request)
            reader = _reader(await self._adapter(practice_id, ctx, "parent"))
            column_ids = await _checked_columns(reader, ctx, columns)
            return await _pack(practice_id, window, await read(reader)(ctx, window, column_ids))

        return await self._run(context, method, handle)

    async def ListWorkingHours(
        self, request: reader_service_pb2.ListWorkingHoursRequest, context: _ServicerContext
    ) -> reader_service_pb2.ListWorkingHoursResponse:
        packed = await self._packed_window(context, "ListWorkingHours", request, lambda r: r.list_working_hours)
        return reader_service_pb2.ListWorkingHoursResponse(working_hours=packed)

    async def ListAbsences(
        self, request: reader_service_pb2.ListAbsencesRequest, context: _ServicerContext
    ) -> reader_service_pb2.ListAbsencesResponse:
        async def handle(ctx: CallContext) -> reader_service_pb2.ListAbsencesResponse:
            practice_id, window, columns = _window_request(request)
            reader = _reader(await self._adapter(practice_id, ctx, "parent"))
            column_ids = await _checked_columns(reader, ctx, columns)
            absences = await reader.list_absences(ctx, window, column_ids)
            order = {column_id: index for index, column_id in enumerate(column_ids)}
            kept = sorted(
                (a for a in absences if a.column_id in order and a.interval.overlaps(window)),
                key=lambda a: (order[a.column_id], a.interval.start),
            )
            return reader_service_pb2.ListAbsencesResponse(absences=[cv.absence_to_proto(practice_id, a) for a in kept])

        return await self._run(context, "ListAbsences", handle)

    async def ListBusyTimes(
        self, request: reader_service_pb2.ListBusyTimesRequest, context: _ServicerContext
    ) -> reader_service_pb2.ListBusyTimesResponse:
        async def handle(ctx: CallContext) -> reader_service_pb2.ListBusyTimesResponse:
            practice_id, window, columns = _window_request(request)
            adapter = await self._adapter(practice_id, ctx, "parent")
            # The cursor first: changes during the read are then replayed rather than missed.
            cursor = "" if adapter.change_feed is None else await adapter.change_feed.current_cursor(ctx)
            column_ids = await _checked_columns(_reader(adapter), ctx, columns)
            busy = await _reader(adapter).list_busy_times(ctx, window, column_ids)
            return reader_service_pb2.ListBusyTimesResponse(
                busy_times=await _pack(practice_id, window, busy), change_cursor=cursor
            )

        return await self._run(context, "ListBusyTimes", handle)

    async def GetFreeTime(
        self, request: reader_service_pb2.GetFreeTimeRequest, context: _ServicerContext
    ) -> reader_service_pb2.GetFreeTimeResponse:
        packed = await self._packed_window(context, "GetFreeTime", request, lambda r: r.get_free_time)
        return reader_service_pb2.GetFreeTimeResponse(free_times=packed)

    async def FindSlots(
        self, request: reader_service_pb2.FindSlotsRequest, context: _ServicerContext
    ) -> reader_service_pb2.FindSlotsResponse:
        async def handle(ctx: CallContext) -> reader_service_pb2.FindSlotsResponse:
            practice_id, window, columns = _window_request(request)
            type_id = parse_practice_child(
                request.appointment_type, "appointment_type", "appointmentTypes", practice_id
            )
            page = PageRequest(
                cv.page_size_from_proto(request.page_size), cv.token_from_proto(request.page_token, "page_token")
            )
            reader = _reader(await self._adapter(practice_id, ctx, "parent"))
            calendar = await reader.list_calendars(ctx)
            kind = next((t for t in calendar.appointment_types if t.id == type_id), None)
            if kind is None:
                raise InvalidArgument.field("appointment_type", "is not an appointment type of this practice")
            known, offering = frozenset(calendar.column_ids()), frozenset(kind.column_ids)
            for index, column_id in enumerate(columns):
                if column_id not in known:
                    raise InvalidArgument.field(f"columns[{index}]", "is not a column of this practice")
                if column_id not in offering:
                    raise InvalidArgument.field(f"columns[{index}]", "does not offer this appointment type")
            found = await reader.find_slots(ctx, SlotQuery(type_id, window, columns, page))
            return reader_service_pb2.FindSlotsResponse(
                slots=await _slots_to_proto(practice_id, found.items),
                next_page_token=found.next_page_token,
            )

        return await self._run(context, "FindSlots", handle)

    async def WatchChanges(
        self, request: reader_service_pb2.WatchChangesRequest, context: _ServicerContext
    ) -> AsyncIterator[reader_service_pb2.WatchChangesResponse]:
        async def handle(ctx: CallContext) -> tuple[str, AsyncIterator[ChangeEvent]]:
            practice_id = cv.practice_from_parent(request.parent)
            requested = cv.column_ids_from_proto(request.columns, practice_id, limit=MAX_COLUMNS)
            cursor = cv.token_from_proto(request.cursor, "cursor")
            adapter = await self._adapter(practice_id, ctx, "parent")
            feed = _need(adapter.change_feed, "a change feed")
            column_ids = await _checked_columns(_reader(adapter), ctx, requested)
            events = feed.watch(ctx, column_ids if requested else (), cursor)
            return practice_id, events

        # A stream has no deadline per message; only opening it runs under _run's rules. Whatever
        # fails later (a bad cursor is found on the first read) ends the stream with its status.
        practice_id, events = await self._run(context, "WatchChanges", handle)
        try:
            async for event in events:
                yield cv.change_to_proto(practice_id, event)
        except Exception as error:
            await abort_for(context, "WatchChanges", error)


def _window_request(request: Any) -> tuple[str, Interval, tuple[str, ...]]:
    practice_id = cv.practice_from_parent(request.parent)
    window = cv.window_from_proto(request)
    return practice_id, window, cv.column_ids_from_proto(request.columns, practice_id, limit=MAX_COLUMNS)


def _slot(request: Any, practice_id: str) -> SlotRequest:
    """The slot and the patient: exactly one of `patient` and `patient_details` (which one the
    practice takes is the booking desk's check, against GetPractice's patient_identification)."""
    with_details = request.HasField("patient_details")
    if request.patient and with_details:
        raise InvalidArgument.field("patient_details", "set either patient or patient_details, not both")
    if not request.patient and not with_details:
        raise InvalidArgument.field(
            "patient", "is required (or patient_details, at a practice whose patient_identification is DETAILS)"
        )
    return SlotRequest(
        appointment_type_id=parse_practice_child(
            request.appointment_type, "appointment_type", "appointmentTypes", practice_id
        ),
        column_id=parse_practice_child(request.column, "column", "columns", practice_id),
        start=cv.required_timestamp(request, "start_time", "start_time"),
        patient_id=parse_practice_child(request.patient, "patient", "patients", practice_id) if request.patient else "",
        patient_details=(
            cv.patient_details_from_proto(request.patient_details, "patient_details") if with_details else None
        ),
    )


class WriterServicer(ServicerBase, writer_service_pb2_grpc.WriterServiceServicer):
    async def _writer(self, practice_id: str, ctx: CallContext, field: str) -> WriterPort:
        return _need((await self._adapter(practice_id, ctx, field)).writer, "writing appointments")

    async def HoldSlot(
        self, request: writer_service_pb2.HoldSlotRequest, context: _ServicerContext
    ) -> writer_service_pb2.HoldSlotResponse:
        async def handle(ctx: CallContext) -> writer_service_pb2.HoldSlotResponse:
            practice_id = cv.practice_from_parent(request.parent)
            slot = _slot(request, practice_id)
            hold = await (await self._writer(practice_id, ctx, "parent")).hold_slot(ctx, slot)
            return writer_service_pb2.HoldSlotResponse(hold=cv.hold_to_proto(practice_id, hold))

        return await self._run(context, "HoldSlot", handle, request.request_id)

    async def ConfirmHold(
        self, request: writer_service_pb2.ConfirmHoldRequest, context: _ServicerContext
    ) -> writer_service_pb2.ConfirmHoldResponse:
        async def handle(ctx: CallContext) -> writer_service_pb2.ConfirmHoldResponse:
            practice_id, hold_id = cv.child_id_from_proto(request.name, "name", "holds")
            appointment = await (await self._writer(practice_id, ctx, "name")).confirm_hold(ctx, hold_id)
            return writer_service_pb2.ConfirmHoldResponse(appointment=cv.appointment_to_proto(practice_id, appointment))

        return await self._run(context, "ConfirmHold", handle, request.request_id)

    async def ReleaseHold(
        self, request: writer_service_pb2.ReleaseHoldRequest, context: _ServicerContext
    ) -> writer_service_pb2.ReleaseHoldResponse:
        async def handle(ctx: CallContext) -> writer_service_pb2.ReleaseHoldResponse:
            practice_id, hold_id = cv.child_id_from_proto(request.name, "name", "holds")
            await (await self._writer(practice_id, ctx, "name")).release_hold(ctx, hold_id)
            return writer_service_pb2.ReleaseHoldResponse()

        return await self._run(context, "ReleaseHold", handle, request.request_id)

    async def BookAppointment(
        self, request: writer_service_pb2.BookAppointmentRequest, context: _ServicerContext
    ) -> writer_service_pb2.BookAppointmentResponse:
        async def handle(ctx: CallContext) -> writer_service_pb2.BookAppointmentResponse:
            practice_id = cv.practice_from_parent(request.parent)
            slot = _slot(request, practice_id)
            appointment = await (await self._writer(practice_id, ctx, "parent")).book_appointment(ctx, slot)
            return writer_service_pb2.BookAppointmentResponse(
                appointment=cv.appointment_to_proto(practice_id, appointment)
            )

        return await self._run(context, "BookAppointment", handle, request.request_id)

    async def CancelAppointment(
        self, request: writer_service_pb2.CancelAppointmentRequest, context: _ServicerContext
    ) -> writer_service_pb2.CancelAppointmentResponse:
        async def handle(ctx: CallContext) -> writer_service_pb2.CancelAppointmentResponse:
            practice_id, appointment_id = cv.child_id_from_proto(request.name, "name", "appointments")
            writer = await self._writer(practice_id, ctx, "name")
            etag = cv.token_from_proto(request.etag, "etag")
            appointment = await writer.cancel_appointment(ctx, appointment_id, etag)
            return writer_service_pb2.CancelAppointmentResponse(
                appointment=cv.appointment_to_proto(practice_id, appointment)
            )

        return await self._run(context, "CancelAppointment", handle, request.request_id)

    async def RescheduleAppointment(
        self, request: writer_service_pb2.RescheduleAppointmentRequest, context: _ServicerContext
    ) -> writer_service_pb2.RescheduleAppointmentResponse:
        async def handle(ctx: CallContext) -> writer_service_pb2.RescheduleAppointmentResponse:
            practice_id, appointment_id = cv.child_id_from_proto(request.name, "name", "appointments")
            start = cv.required_timestamp(request, "start_time", "start_time")
            column_id = (
                parse_practice_child(request.column, "column", "columns", practice_id) if request.column else None
            )
            etag = cv.token_from_proto(request.etag, "etag")
            writer = await self._writer(practice_id, ctx, "name")
            appointment = await writer.reschedule_appointment(ctx, appointment_id, etag, start, column_id)
            return writer_service_pb2.RescheduleAppointmentResponse(
                appointment=cv.appointment_to_proto(practice_id, appointment)
            )

        return await self._run(context, "RescheduleAppointment", handle, request.request_id)

    async def GetAppointment(
        self, request: writer_service_pb2.GetAppointmentRequest, context: _ServicerContext
    ) -> writer_service_pb2.GetAppointmentResponse:
        async def handle(ctx: CallContext) -> writer_service_pb2.GetAppointmentResponse:
            practice_id, appointment_id = cv.child_id_from_proto(request.name, "name", "appointments")
            appointment = await (await self._writer(practice_id, ctx, "name")).get_appointment(ctx, appointment_id)
            return writer_service_pb2.GetAppointmentResponse(
                appointment=cv.appointment_to_proto(practice_id, appointment)
            )

        return await self._run(context, "GetAppointment", handle)

    async def ListAppointments(
        self, request: writer_service_pb2.ListAppointmentsRequest, context: _ServicerContext
    ) -> writer_service_pb2.ListAppointmentsResponse:
        async def handle(ctx: CallContext) -> writer_service_pb2.ListAppointmentsResponse:
            practice_id = cv.practice_from_parent(request.parent)
            start = cv.optional_timestamp(request, "start_time", "start_time")
            end = cv.optional_timestamp(request, "end_time", "end_time")
            if start is not None and end is not None and end <= start:
                raise InvalidArgument.field("end_time", "must be after start_time")
            query = AppointmentQuery(
                page=PageRequest(
                    cv.page_size_from_proto(request.page_size), cv.token_from_proto(request.page_token, "page_token")
                ),
                start=start,
                end=end,
                include_cancelled=request.include_cancelled,
            )
            page = await (await self._writer(practice_id, ctx, "parent")).list_appointments(ctx, query)
            return writer_service_pb2.ListAppointmentsResponse(
                appointments=[cv.appointment_to_proto(practice_id, a) for a in page.items],
                next_page_token=page.next_page_token,
            )

        return await self._run(context, "ListAppointments", handle)


class PatientLookupServicer(ServicerBase, patient_lookup_service_pb2_grpc.PatientLookupServiceServicer):
    async def _lookup(self, practice_id: str, ctx: CallContext) -> PatientLookupPort:
        return _need((await self._adapter(practice_id, ctx, "parent")).patient_lookup, "patient lookup")

    async def FindOrCreatePatient(
        self, request: patient_lookup_service_pb2.FindOrCreatePatientRequest, context: _ServicerContext
    ) -> patient_lookup_service_pb2.FindOrCreatePatientResponse:
        async def handle(ctx: CallContext) -> patient_lookup_service_pb2.FindOrCreatePatientResponse:
            practice_id = cv.practice_from_parent(request.parent)
            query = PatientQuery(
                given_name=cv.name_part(request.given_name, "given_name"),
                family_name=cv.name_part(request.family_name, "family_name"),
                birth_date=cv.birth_date_from_proto(request, "birth_date", "birth_date"),
                contacts=cv.contacts_from_proto(request.contacts, limit=MAX_CONTACTS),
                gender=cv.gender_from_proto(request.gender, "gender"),
                address=cv.address_from_proto(request, "address", "address"),
            )
            patient, outcome = await (await self._lookup(practice_id, ctx)).find_or_create_patient(ctx, query)
            return patient_lookup_service_pb2.FindOrCreatePatientResponse(
                patient=cv.patient_to_proto(practice_id, patient), outcome=cv.match_outcome_to_proto(outcome)
            )

        return await self._run(context, "FindOrCreatePatient", handle, request.request_id)

    async def ListSharedPatients(
        self, request: patient_lookup_service_pb2.ListSharedPatientsRequest, context: _ServicerContext
    ) -> patient_lookup_service_pb2.ListSharedPatientsResponse:
        async def handle(ctx: CallContext) -> patient_lookup_service_pb2.ListSharedPatientsResponse:
            practice_id = cv.practice_from_parent(request.parent)
            page_request = PageRequest(
                cv.page_size_from_proto(request.page_size), cv.token_from_proto(request.page_token, "page_token")
            )
            page = await (await self._lookup(practice_id, ctx)).list_shared_patients(ctx, page_request)
            return patient_lookup_service_pb2.ListSharedPatientsResponse(
                patients=[cv.patient_to_proto(practice_id, p) for p in page.items],
                next_page_token=page.next_page_token,
            )

        return await self._run(context, "ListSharedPatients", handle)


class ConsentServicer(ServicerBase, consent_service_pb2_grpc.ConsentServiceServicer):
    async def _consent(self, practice_id: str, ctx: CallContext) -> ConsentPort:
        return _need((await self._adapter(practice_id, ctx, "name")).consent, "consent records")

    async def GetConsent(
        self, request: consent_service_pb2.GetConsentRequest, context: _ServicerContext
    ) -> consent_service_pb2.GetConsentResponse:
        async def handle(ctx: CallContext) -> consent_service_pb2.GetConsentResponse:
            practice_id, patient_id = cv.consent_name_parts(request.name)
            consent = await (await self._consent(practice_id, ctx)).get_consent(ctx, patient_id)
            return consent_service_pb2.GetConsentResponse(consent=cv.consent_to_proto(practice_id, consent))

        return await self._run(context, "GetConsent", handle)

    async def RecordConsent(
        self, request: consent_service_pb2.RecordConsentRequest, context: _ServicerContext
    ) -> consent_service_pb2.RecordConsentResponse:
        async def handle(ctx: CallContext) -> consent_service_pb2.RecordConsentResponse:
            practice_id, patient_id = cv.consent_name_parts(request.name)
            state = cv.consent_state_from_proto(request.state, "state")
            evidence = cv.evidence_from_proto(request, "evidence", "evidence")
            port = await self._consent(practice_id, ctx)
            consent = await port.record_consent(ctx, patient_id, state, evidence)
            return consent_service_pb2.RecordConsentResponse(consent=cv.consent_to_proto(practice_id, consent))

        return await self._run(context, "RecordConsent", handle, request.request_id)


class SandboxServicer(ServicerBase, sandbox_service_pb2_grpc.SandboxServiceServicer):
    """Served by adapter servers only (see sandbox_service.proto), never by the gateway."""

    async def LoadScenario(
        self, request: sandbox_service_pb2.LoadScenarioRequest, context: _ServicerContext
    ) -> sandbox_service_pb2.LoadScenarioResponse:
        async def handle(ctx: CallContext) -> sandbox_service_pb2.LoadScenarioResponse:
            practice_id = cv.practice_from_parent(request.name, "name")
            scenario = cv.scenario_from_proto(practice_id, request.scenario)
            port = _need((await self._adapter(practice_id, ctx, "name")).sandbox, "a sandbox")
            await port.load_scenario(ctx, scenario)
            return sandbox_service_pb2.LoadScenarioResponse()

        return await self._run(context, "LoadScenario", handle, request.request_id)

    async def ResetSandbox(
        self, request: sandbox_service_pb2.ResetSandboxRequest, context: _ServicerContext
    ) -> sandbox_service_pb2.ResetSandboxResponse:
        async def handle(ctx: CallContext) -> sandbox_service_pb2.ResetSandboxResponse:
            practice_id = cv.practice_from_parent(request.name, "name")
            port = _need((await self._adapter(practice_id, ctx, "name")).sandbox, "a sandbox")
            await port.reset(ctx)
            return sandbox_service_pb2.ResetSandboxResponse()

        return await self._run(context, "ResetSandbox", handle, request.request_id)


def add_sandbox_servicer(server: grpc.aio.Server, resolver: AdapterResolver, identify: Identify) -> str:
    sandbox_service_pb2_grpc.add_SandboxServiceServicer_to_server(SandboxServicer(resolver, identify), server)
    return sandbox_service_pb2.DESCRIPTOR.services_by_name["SandboxService"].full_name


def add_servicers(server: grpc.aio.Server, resolver: AdapterResolver, identify: Identify) -> list[str]:
    """Register the four services on server; return their full names (for health and reflection)."""
    reader_service_pb2_grpc.add_ReaderServiceServicer_to_server(ReaderServicer(resolver, identify), server)
    writer_service_pb2_grpc.add_WriterServiceServicer_to_server(WriterServicer(resolver, identify), server)
    patient_lookup_service_pb2_grpc.add_PatientLookupServiceServicer_to_server(
        PatientLookupServicer(resolver, identify), server
    )
    consent_service_pb2_grpc.add_ConsentServiceServicer_to_server(ConsentServicer(resolver, identify), server)
    return [
        reader_service_pb2.DESCRIPTOR.services_by_name["ReaderService"].full_name,
        writer_service_pb2.DESCRIPTOR.services_by_name["WriterService"].full_name,
        patient_lookup_service_pb2.DESCRIPTOR.services_by_name["PatientLookupService"].full_name,
        consent_service_pb2.DESCRIPTOR.services_by_name["ConsentService"].full_name,
    ]
