"""PracticeService over gRPC: the practice's PVS at its inbox, decisions, audit and licences.

Who may call it is decided before a handler runs (authentication.py): a key with the `practice`
grant for the practice the request names, never a partner's `*`. The domain is practice_desk.py;
here only requests are parsed and answers converted. The actor recorded with each decision is
`pvs:<principal>`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import grpc
from google.protobuf import duration_pb2

from gateway.practice_desk import InboxEvent, InboxItem, PartnerLicence, PracticeDesk, practice_desk
from gateway.routing import PracticeRouter
from otv.v1 import appointment_pb2, patient_pb2, practice_service_pb2, practice_service_pb2_grpc, reader_service_pb2
from otv.v1.time_pb2 import Date
from otv_sdk import conversion as cv
from otv_sdk.errors import InvalidArgument
from otv_sdk.models import AppointmentState
from otv_sdk.ports import CallContext
from otv_sdk.resources import format_name, parse_practice_child
from otv_sdk.servicers import Identify, ServicerBase, abort_for

__all__ = ["add_practice_servicer"]

_pb = practice_service_pb2
_KINDS = {"confirmation": _pb.INBOX_ITEM_KIND_CONFIRMATION, "transfer": _pb.INBOX_ITEM_KIND_TRANSFER}
_SERVICES = {
    "reader": _pb.PARTNER_SERVICE_READER,
    "writer": _pb.PARTNER_SERVICE_WRITER,
    "patient_lookup": _pb.PARTNER_SERVICE_PATIENT_LOOKUP,
    "consent": _pb.PARTNER_SERVICE_CONSENT,
}
_SERVICES_BACK = {v: k for k, v in _SERVICES.items()}
_STATES = {
    state.value: appointment_pb2.AppointmentState.Value(f"APPOINTMENT_STATE_{state.name}") for state in AppointmentState
}


def _actor(ctx: CallContext) -> str:
    return f"pvs:{ctx.partner_id}"


def item_to_proto(practice_id: str, item: InboxItem) -> practice_service_pb2.InboxItem:
    p = practice_id
    msg = _pb.InboxItem(
        name=format_name(p, "appointments", item.appointment_id),
        kind=_KINDS[item.kind],
        partner=item.partner_id,
        appointment_type=format_name(p, "appointmentTypes", item.appointment_type_id),
        appointment_type_display_name=item.appointment_type_name,
        column=format_name(p, "columns", item.column_id),
        column_display_name=item.column_name,
        start_time=cv.datetime_to_timestamp(item.start),
        end_time=cv.datetime_to_timestamp(item.end),
        duration=duration_pb2.Duration(seconds=int((item.end - item.start).total_seconds())),
        create_time=cv.datetime_to_timestamp(item.create_time),
        state=_STATES.get(item.state, appointment_pb2.APPOINTMENT_STATE_UNSPECIFIED),
        etag=item.etag,
    )
    if item.patient is not None:
        patient = item.patient
        msg.patient.CopyFrom(
            _pb.InboxPatient(
                given_name=patient.given_name,
                family_name=patient.family_name,
                contacts=[
                    patient_pb2.Contact(kind=cv.contact_kind_to_proto(c.kind), value=c.value) for c in patient.contacts
                ],
                gender=cv.gender_to_proto(patient.gender),
                note=patient.note,
            )
        )
        if patient.birth_date is not None:
            msg.patient.birth_date.CopyFrom(_date(patient.birth_date))
        if patient.address is not None:
            msg.patient.address.CopyFrom(cv.address_to_proto(patient.address))
    return msg


def _date(value: date) -> Date:
    return Date(year=value.year, month=value.month, day=value.day)


def _licence(licence: PartnerLicence) -> practice_service_pb2.PartnerLicence:
    return _pb.PartnerLicence(
        partner=licence.partner_id,
        display_name=licence.display_name,
        services=[_SERVICES[s] for s in _SERVICES if s in licence.services],
    )


def _event(practice_id: str, event: InboxEvent) -> practice_service_pb2.WatchInboxResponse:
    if event.item is not None:
        return _pb.WatchInboxResponse(cursor=event.cursor, item=item_to_proto(practice_id, event.item))
    if event.removed_id is not None:
        return _pb.WatchInboxResponse(
            cursor=event.cursor, removed=format_name(practice_id, "appointments", event.removed_id)
        )
    return _pb.WatchInboxResponse(cursor=event.cursor, heartbeat=reader_service_pb2.Heartbeat())


def _page_position(token: str, size: int) -> int:
    """ListInboxItems pages by offset; the token is the offset as digits."""
    if not token:
        return 0
    if not (token.isascii() and token.isdigit()) or len(token) > 9:
        raise InvalidArgument.field("page_token", "is not a token this server issued")
    return int(token)


class _PracticeServicer(ServicerBase, practice_service_pb2_grpc.PracticeServiceServicer):
    def __init__(self, router: PracticeRouter, identify: Identify) -> None:
        super().__init__(router, identify)
        self._router = router

    async def _desk(self, name: str, field: str) -> tuple[str, PracticeDesk]:
        practice_id = cv.practice_from_parent(name, field)
        return practice_id, await practice_desk(self._router, practice_id)

    async def _booking(self, name: str) -> tuple[str, str, PracticeDesk]:
        practice_id = cv.practice_from_parent("/".join(name.split("/")[:2]), "name")
        appointment_id = parse_practice_child(name, "name", "appointments", practice_id)
        return practice_id, appointment_id, await practice_desk(self._router, practice_id)

    async def ListInboxItems(
        self, request: practice_service_pb2.ListInboxItemsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> practice_service_pb2.ListInboxItemsResponse:
        async def handle(ctx: CallContext) -> practice_service_pb2.ListInboxItemsResponse:
            practice_id, desk = await self._desk(request.parent, "parent")
            size = cv.page_size_from_proto(request.page_size)
            offset = _page_position(cv.token_from_proto(request.page_token, "page_token"), size)
            items = await desk.inbox()
            page = items[offset : offset + size]
            more = offset + size < len(items)
            return _pb.ListInboxItemsResponse(
                items=[item_to_proto(practice_id, i) for i in page], next_page_token=str(offset + size) if more else ""
            )

        return await self._run(context, "ListInboxItems", handle)

    async def WatchInbox(
        self, request: practice_service_pb2.WatchInboxRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[practice_service_pb2.WatchInboxResponse]:
        async def handle(ctx: CallContext) -> tuple[str, AsyncIterator[InboxEvent]]:
            practice_id, desk = await self._desk(request.parent, "parent")
            cursor = cv.token_from_proto(request.cursor, "cursor")
            feed = self._router.feed(practice_id)
            heartbeat = feed.heartbeat_seconds if feed is not None else 15.0
            return practice_id, desk.watch(cursor, heartbeat_seconds=heartbeat)

        practice_id, events = await self._run(context, "WatchInbox", handle)
        try:
            async for event in events:
                yield _event(practice_id, event)
        except Exception as error:
            await abort_for(context, "WatchInbox", error)

    async def AcceptBooking(
        self, request: practice_service_pb2.AcceptBookingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> practice_service_pb2.AcceptBookingResponse:
        async def handle(ctx: CallContext) -> practice_service_pb2.AcceptBookingResponse:
            practice_id, appointment_id, desk = await self._booking(request.name)
            etag = cv.token_from_proto(request.etag, "etag")
            assert ctx.request_id is not None
            item = await desk.accept(_actor(ctx), appointment_id, etag, ctx.request_id)
            return _pb.AcceptBookingResponse(item=item_to_proto(practice_id, item))

        return await self._run(context, "AcceptBooking", handle, request.request_id)

    async def RejectBooking(
        self, request: practice_service_pb2.RejectBookingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> practice_service_pb2.RejectBookingResponse:
        async def handle(ctx: CallContext) -> practice_service_pb2.RejectBookingResponse:
            practice_id, appointment_id, desk = await self._booking(request.name)
            etag = cv.token_from_proto(request.etag, "etag")
            assert ctx.request_id is not None
            item = await desk.reject(_actor(ctx), appointment_id, etag, request.reason, ctx.request_id)
            return _pb.RejectBookingResponse(item=item_to_proto(practice_id, item))

        return await self._run(context, "RejectBooking", handle, request.request_id)

    async def MarkBookingTransferred(
        self, request: practice_service_pb2.MarkBookingTransferredRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> practice_service_pb2.MarkBookingTransferredResponse:
        async def handle(ctx: CallContext) -> practice_service_pb2.MarkBookingTransferredResponse:
            practice_id, appointment_id, desk = await self._booking(request.name)
            etag = cv.token_from_proto(request.etag, "etag")
            assert ctx.request_id is not None
            item = await desk.mark_transferred(
                _actor(ctx), appointment_id, etag, request.pvs_id or None, ctx.request_id
            )
            return _pb.MarkBookingTransferredResponse(item=item_to_proto(practice_id, item))

        return await self._run(context, "MarkBookingTransferred", handle, request.request_id)

    async def ListAuditEntries(
        self, request: practice_service_pb2.ListAuditEntriesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> practice_service_pb2.ListAuditEntriesResponse:
        async def handle(ctx: CallContext) -> practice_service_pb2.ListAuditEntriesResponse:
            _, desk = await self._desk(request.parent, "parent")
            since = cv.optional_timestamp(request, "start_time", "start_time")
            until = cv.optional_timestamp(request, "end_time", "end_time")
            entries, token = await desk.audit(
                partner_id=cv.bounded_text(request.partner, "partner", 64) or None,
                action=cv.bounded_text(request.action, "action", 200) or None,
                since=since,
                until=until,
                page_size=cv.page_size_from_proto(request.page_size),
                page_token=cv.token_from_proto(request.page_token, "page_token"),
            )
            return _pb.ListAuditEntriesResponse(
                entries=[
                    _pb.AuditEntry(
                        time=cv.datetime_to_timestamp(e.at),
                        partner=e.partner_id,
                        action=e.action,
                        subject=e.subject,
                        outcome=e.outcome,
                    )
                    for e in entries
                ],
                next_page_token=token,
            )

        return await self._run(context, "ListAuditEntries", handle)

    async def ListPartnerLicences(
        self, request: practice_service_pb2.ListPartnerLicencesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> practice_service_pb2.ListPartnerLicencesResponse:
        async def handle(ctx: CallContext) -> practice_service_pb2.ListPartnerLicencesResponse:
            _, desk = await self._desk(request.parent, "parent")
            return _pb.ListPartnerLicencesResponse(licences=[_licence(lic) for lic in await desk.licences()])

        return await self._run(context, "ListPartnerLicences", handle)

    async def UpdatePartnerLicence(
        self, request: practice_service_pb2.UpdatePartnerLicenceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> practice_service_pb2.UpdatePartnerLicenceResponse:
        async def handle(ctx: CallContext) -> practice_service_pb2.UpdatePartnerLicenceResponse:
            _, desk = await self._desk(request.parent, "parent")
            if not request.partner:
                raise InvalidArgument.field("partner", "is required")
            services = set()
            for index, value in enumerate(request.services):
                service = _SERVICES_BACK.get(value)
                if service is None:
                    raise InvalidArgument.field(f"services[{index}]", "is not a partner service")
                services.add(service)
            partner = cv.bounded_text(request.partner, "partner", 64)
            licence = await desk.set_licence(_actor(ctx), partner, frozenset(services))
            return _pb.UpdatePartnerLicenceResponse(licence=_licence(licence))

        return await self._run(context, "UpdatePartnerLicence", handle, request.request_id)


def add_practice_servicer(server: grpc.aio.Server, router: PracticeRouter, identify: Identify) -> str:
    practice_service_pb2_grpc.add_PracticeServiceServicer_to_server(_PracticeServicer(router, identify), server)
    return practice_service_pb2.DESCRIPTOR.services_by_name["PracticeService"].full_name
