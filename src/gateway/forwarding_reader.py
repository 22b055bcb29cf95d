"""A reader that passes every call on to another: the base of the gateway's wrappers around a
practice's reader, so each wrapper states only what it changes."""

from __future__ import annotations

from collections.abc import Sequence

from otv_sdk.models import Absence, Calendar, ColumnIntervals, Interval, PracticeProfile, Slot
from otv_sdk.ports import CallContext, Page, ReaderPort, SlotQuery

__all__ = ["ForwardingReader"]


class ForwardingReader(ReaderPort):
    def __init__(self, inner: ReaderPort) -> None:
        self._inner = inner

    async def get_practice(self, ctx: CallContext) -> PracticeProfile:
        return await self._inner.get_practice(ctx)

    async def list_calendars(self, ctx: CallContext) -> Calendar:
        return await self._inner.list_calendars(ctx)

    async def list_working_hours(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        return await self._inner.list_working_hours(ctx, window, column_ids)

    async def list_absences(self, ctx: CallContext, window: Interval, column_ids: Sequence[str]) -> list[Absence]:
        return await self._inner.list_absences(ctx, window, column_ids)

    async def list_busy_times(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        return await self._inner.list_busy_times(ctx, window, column_ids)

    async def get_free_time(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        return await self._inner.get_free_time(ctx, window, column_ids)

    async def find_slots(self, ctx: CallContext, query: SlotQuery) -> Page[Slot]:
        return await self._inner.find_slots(ctx, query)
