"""ReaderService: the calendar as partners read it, from the practice's reader port.

Large answers (24 months of busy time, a page of 1000 slots) are converted straight into the
response's repeated fields, pausing every half millisecond (loop_share.py), so no single step holds
the event loop that every other call shares.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeAlias

import grpc
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

from otv.v1 import (
    reader_service_pb2,
    reader_service_pb2_grpc,
    time_pb2,
)
from otv_sdk import conversion as cv
from otv_sdk.changes import ChangeEvent
from otv_sdk.errors import InvalidArgument
from otv_sdk.limits import MAX_COLUMNS
from otv_sdk.loop_share import LoopShare
from otv_sdk.models import AdapterInfo, Calendar, Capability, ColumnIntervals, Interval, Practice, PracticeProfile, Slot
from otv_sdk.ports import (
    Adapter,
    CallContext,
    PageRequest,
    ReaderPort,
    SlotQuery,
)
from otv_sdk.resources import parse_practice_child
from otv_sdk.servicer_base import AdapterResolver, Identify, ServicerBase, abort_for, need_port
from otv_sdk.timeline import from_datetime

__all__ = ["ReaderServicer", "window_request"]


_ServicerContext: TypeAlias = grpc.aio.ServicerContext[Any, Any]

_PackedRead = Callable[[CallContext, Interval, Sequence[str]], Awaitable[list[ColumnIntervals]]]


def _reader(adapter: Adapter) -> ReaderPort:
    return need_port(adapter.reader, "reading the calendar")


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


async def _pack_into(
    target: RepeatedCompositeFieldContainer[time_pb2.PackedIntervals],
    practice_id: str,
    window: Interval,
    result: Sequence[ColumnIntervals],
) -> None:
    """Clip to the window (adapters should, the edge makes sure) and pack relative to its start,
    each column into a message added to `target` (a response's repeated field): a list of messages
    passed to a response's constructor would be copied whole, in one piece.

    24 months of a busy column take ~0.25 ms, a whole practice ~5 ms: paused on the clock."""
    lo, hi = from_datetime(window.start), from_datetime(window.end)
    share = LoopShare()
    for c in result:
        await share.pause_if_due()
        cv.pack_intervals(
            practice_id, window.start, ColumnIntervals(c.column_id, c.intervals.clipped(lo, hi)), into=target.add()
        )


async def _slots_into(
    target: RepeatedCompositeFieldContainer[reader_service_pb2.Slot], practice_id: str, slots: Sequence[Slot]
) -> None:
    """A page of up to 1000 slots (~1.5 ms in all), added to a response's repeated field in place."""
    share = LoopShare()
    for slot in slots:
        await share.pause_if_due()
        cv.slot_to_proto(practice_id, slot, into=target.add())


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

    async def _window_read(
        self, ctx: CallContext, request: Any, read: Callable[[ReaderPort], _PackedRead]
    ) -> tuple[str, Interval, list[ColumnIntervals]]:
        """The shared start of ListWorkingHours and GetFreeTime: the practice, the window, and the
        per-column intervals read for the checked columns."""
        practice_id, window, columns = window_request(request)
        reader = _reader(await self._adapter(practice_id, ctx, "parent"))
        column_ids = await _checked_columns(reader, ctx, columns)
        return practice_id, window, await read(reader)(ctx, window, column_ids)

    async def ListWorkingHours(
        self, request: reader_service_pb2.ListWorkingHoursRequest, context: _ServicerContext
    ) -> reader_service_pb2.ListWorkingHoursResponse:
        async def handle(ctx: CallContext) -> reader_service_pb2.ListWorkingHoursResponse:
            practice_id, window, hours = await self._window_read(ctx, request, lambda r: r.list_working_hours)
            response = reader_service_pb2.ListWorkingHoursResponse()
            await _pack_into(response.working_hours, practice_id, window, hours)
            return response

        return await self._run(context, "ListWorkingHours", handle)

    async def ListAbsences(
        self, request: reader_service_pb2.ListAbsencesRequest, context: _ServicerContext
    ) -> reader_service_pb2.ListAbsencesResponse:
        async def handle(ctx: CallContext) -> reader_service_pb2.ListAbsencesResponse:
            practice_id, window, columns = window_request(request)
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
            practice_id, window, columns = window_request(request)
            adapter = await self._adapter(practice_id, ctx, "parent")
            # The cursor first: changes during the read are then replayed rather than missed.
            cursor = "" if adapter.change_feed is None else await adapter.change_feed.current_cursor(ctx)
            column_ids = await _checked_columns(_reader(adapter), ctx, columns)
            busy = await _reader(adapter).list_busy_times(ctx, window, column_ids)
            response = reader_service_pb2.ListBusyTimesResponse(change_cursor=cursor)
            await _pack_into(response.busy_times, practice_id, window, busy)
            return response

        return await self._run(context, "ListBusyTimes", handle)

    async def GetFreeTime(
        self, request: reader_service_pb2.GetFreeTimeRequest, context: _ServicerContext
    ) -> reader_service_pb2.GetFreeTimeResponse:
        async def handle(ctx: CallContext) -> reader_service_pb2.GetFreeTimeResponse:
            practice_id, window, free = await self._window_read(ctx, request, lambda r: r.get_free_time)
            response = reader_service_pb2.GetFreeTimeResponse()
            await _pack_into(response.free_times, practice_id, window, free)
            return response

        return await self._run(context, "GetFreeTime", handle)

    async def FindSlots(
        self, request: reader_service_pb2.FindSlotsRequest, context: _ServicerContext
    ) -> reader_service_pb2.FindSlotsResponse:
        async def handle(ctx: CallContext) -> reader_service_pb2.FindSlotsResponse:
            practice_id, window, columns = window_request(request)
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
            response = reader_service_pb2.FindSlotsResponse(next_page_token=found.next_page_token)
            await _slots_into(response.slots, practice_id, found.items)
            return response

        return await self._run(context, "FindSlots", handle)

    async def WatchChanges(
        self, request: reader_service_pb2.WatchChangesRequest, context: _ServicerContext
    ) -> AsyncIterator[reader_service_pb2.WatchChangesResponse]:
        async def handle(ctx: CallContext) -> tuple[str, AsyncIterator[ChangeEvent]]:
            practice_id = cv.practice_from_parent(request.parent)
            requested = cv.column_ids_from_proto(request.columns, practice_id, limit=MAX_COLUMNS)
            cursor = cv.token_from_proto(request.cursor, "cursor")
            adapter = await self._adapter(practice_id, ctx, "parent")
            feed = need_port(adapter.change_feed, "a change feed")
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


def window_request(request: Any) -> tuple[str, Interval, tuple[str, ...]]:
    practice_id = cv.practice_from_parent(request.parent)
    window = cv.window_from_proto(request)
    return practice_id, window, cv.column_ids_from_proto(request.columns, practice_id, limit=MAX_COLUMNS)
