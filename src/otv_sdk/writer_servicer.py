"""WriterService: holds, bookings, cancellations and reschedules through the practice's writer port."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

from otv.v1 import (
    writer_service_pb2,
    writer_service_pb2_grpc,
)
from otv_sdk import conversion as cv
from otv_sdk.errors import InvalidArgument
from otv_sdk.ports import (
    AppointmentQuery,
    CallContext,
    PageRequest,
    SlotRequest,
    WriterPort,
)
from otv_sdk.resources import parse_practice_child
from otv_sdk.servicer_base import ServicerBase, need_port

__all__ = ["WriterServicer"]


_ServicerContext: TypeAlias = grpc.aio.ServicerContext[Any, Any]


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
        return need_port((await self._adapter(practice_id, ctx, field)).writer, "writing appointments")

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
