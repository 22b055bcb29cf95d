"""A connector practice while its connector is offline: reads from the last known state, writes refused.

A practice behind an outbound connector (connectors.py) drops off whenever its internet line or
its server does. Partners should still see its calendar, knowing how old it is: every read that
succeeds is remembered, and while the connector is offline the same read (or one inside a
remembered window) is answered from memory with its age (otv_sdk.freshness). A read the gateway
never saw answers UNAVAILABLE. Writes (holds included) fail UNAVAILABLE before anything is
recorded: a booking must never look accepted while the PVS cannot take it.

What is remembered is the practice's raw data (`CalendarDataPort`), per gateway process and per
column: the newest read of each kind. Free time and slots are computed from it by the gateway as
for any practice, so while offline they are as old as the data they come from, and say so.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from gateway.connectors import ConnectorHub
from gateway.remote import RemoteAdapterSource
from otv_sdk.errors import Unavailable
from otv_sdk.freshness import report_data_age
from otv_sdk.models import (
    Absence,
    Appointment,
    Calendar,
    ColumnIntervals,
    Hold,
    Interval,
    PracticeProfile,
    WorkingTimeRules,
)
from otv_sdk.ports import (
    Adapter,
    AppointmentQuery,
    CalendarDataPort,
    CallContext,
    Page,
    SlotRequest,
    WriterPort,
)
from otv_sdk.timeline import IntervalArray, from_datetime

__all__ = ["ConnectorAdapterSource", "LastKnownCalendarData", "OnlineOnlyWriter"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Known(Generic[T]):
    value: T
    at: float
    window: tuple[int, int] = (0, 0)


class LastKnownCalendarData(CalendarDataPort):
    def __init__(
        self, inner: CalendarDataPort, online: Callable[[], bool], clock: Callable[[], float] = time.time
    ) -> None:
        self.inner = inner
        self._online = online
        self._clock = clock
        self._profile: _Known[PracticeProfile] | None = None
        self._calendar: _Known[Calendar] | None = None
        self._rules: _Known[WorkingTimeRules] | None = None
        self._intervals: dict[tuple[str, str], _Known[IntervalArray]] = {}
        self._absences: dict[str, _Known[list[Absence]]] = {}
        self._slot_list = False  # whether the practice answered predefined slots (a slot-list PVS)

    async def _live(self, read: Callable[[], Awaitable[T]]) -> T | None:
        """The live answer, or None when the practice cannot be reached."""
        if not self._online():
            return None
        try:
            return await read()
        except Unavailable:
            return None

    def _recalled(self, known: _Known[T] | None, what: str) -> T:
        if known is None:
            raise Unavailable(f"the practice's system is offline and the gateway has no last known {what}")
        report_data_age(self._clock() - known.at)
        return known.value

    @staticmethod
    def _covers(known: _Known[T] | None, lo: int, hi: int) -> _Known[T] | None:
        return known if known is not None and known.window[0] <= lo < hi <= known.window[1] else None

    async def get_practice(self, ctx: CallContext) -> PracticeProfile:
        live = await self._live(lambda: self.inner.get_practice(ctx))
        if live is not None:
            self._profile = _Known(live, self._clock())
            return live
        return self._recalled(self._profile, "practice profile")

    async def list_calendars(self, ctx: CallContext) -> Calendar:
        live = await self._live(lambda: self.inner.list_calendars(ctx))
        if live is not None:
            self._calendar = _Known(live, self._clock())
            return live
        return self._recalled(self._calendar, "calendar")

    async def list_working_time_rules(self, ctx: CallContext, window: Interval) -> WorkingTimeRules:
        lo, hi = from_datetime(window.start), from_datetime(window.end)
        live = await self._live(lambda: self.inner.list_working_time_rules(ctx, window))
        if live is not None:
            self._rules = _Known(live, self._clock(), (lo, hi))
            return live
        return self._recalled(self._covers(self._rules, lo, hi), "working hours for this window")

    def _wanted(self, column_ids: Sequence[str], what: str) -> Sequence[str]:
        if column_ids:
            return column_ids
        return [column.id for column in self._recalled(self._calendar, what).columns]

    async def _interval_read(
        self,
        kind: str,
        read: Callable[[], Awaitable[list[ColumnIntervals] | None]],
        window: Interval,
        column_ids: Sequence[str],
    ) -> list[ColumnIntervals]:
        lo, hi = from_datetime(window.start), from_datetime(window.end)
        live = await self._live(read)
        if live is not None:
            now = self._clock()
            for item in live:
                self._intervals[(kind, item.column_id)] = _Known(item.intervals, now, (lo, hi))
            return live
        result = []
        for column_id in self._wanted(column_ids, kind):
            known = self._covers(self._intervals.get((kind, column_id)), lo, hi)
            intervals = self._recalled(known, f"{kind} of column {column_id} for this window")
            result.append(ColumnIntervals(column_id, intervals.sorted().clipped(lo, hi)))
        return result

    async def list_busy_times(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        return await self._interval_read(
            "busy times", lambda: self.inner.list_busy_times(ctx, window, column_ids), window, column_ids
        )

    async def list_predefined_slots(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals] | None:
        if self._online():
            try:
                live = await self.inner.list_predefined_slots(ctx, window, column_ids)
            except Unavailable:
                live = None
            else:
                self._slot_list = live is not None
                if live is None:
                    return None
        if not self._slot_list:
            return None
        return await self._interval_read(
            "free slots", lambda: self.inner.list_predefined_slots(ctx, window, column_ids), window, column_ids
        )

    async def list_absences(self, ctx: CallContext, window: Interval, column_ids: Sequence[str]) -> list[Absence]:
        lo, hi = from_datetime(window.start), from_datetime(window.end)
        live = await self._live(lambda: self.inner.list_absences(ctx, window, column_ids))
        if live is not None:
            now = self._clock()
            for column_id in column_ids or [a.column_id for a in live]:
                mine = [a for a in live if a.column_id == column_id]
                self._absences[column_id] = _Known(mine, now, (lo, hi))
            return live
        result: list[Absence] = []
        for column_id in self._wanted(column_ids, "absences"):
            known = self._covers(self._absences.get(column_id), lo, hi)
            absences = self._recalled(known, f"absences of column {column_id} for this window")
            result.extend(a for a in absences if a.interval.start < window.end and a.interval.end > window.start)
        return result


class OnlineOnlyWriter(WriterPort):
    """Refuses every change while the practice's connector is offline; reads pass (the gateway keeps them)."""

    def __init__(self, inner: WriterPort, online: Callable[[], bool]) -> None:
        self.inner = inner
        self._online = online

    def _check(self) -> None:
        if not self._online():
            raise Unavailable("the practice's system is offline; nothing was held or booked, try again later")

    async def hold_slot(self, ctx: CallContext, slot: SlotRequest) -> Hold:
        self._check()
        return await self.inner.hold_slot(ctx, slot)

    async def confirm_hold(self, ctx: CallContext, hold_id: str) -> Appointment:
        self._check()
        return await self.inner.confirm_hold(ctx, hold_id)

    async def release_hold(self, ctx: CallContext, hold_id: str) -> None:
        await self.inner.release_hold(ctx, hold_id)  # only frees time the gateway holds: always safe

    async def book_appointment(self, ctx: CallContext, slot: SlotRequest) -> Appointment:
        self._check()
        return await self.inner.book_appointment(ctx, slot)

    async def cancel_appointment(self, ctx: CallContext, appointment_id: str, etag: str) -> Appointment:
        self._check()
        return await self.inner.cancel_appointment(ctx, appointment_id, etag)

    async def reschedule_appointment(
        self, ctx: CallContext, appointment_id: str, etag: str, start: datetime, column_id: str | None
    ) -> Appointment:
        self._check()
        return await self.inner.reschedule_appointment(ctx, appointment_id, etag, start, column_id)

    async def get_appointment(self, ctx: CallContext, appointment_id: str) -> Appointment:
        return await self.inner.get_appointment(ctx, appointment_id)

    async def list_appointments(self, ctx: CallContext, query: AppointmentQuery) -> Page[Appointment]:
        return await self.inner.list_appointments(ctx, query)


class ConnectorAdapterSource:
    """A connector practice's adapter: the remote transport over the connector's channel, with memory."""

    def __init__(self, hub: ConnectorHub, practice_id: str, remote_practice: str, cache_seconds: float) -> None:
        self._hub = hub
        self._practice = practice_id
        self._remote = RemoteAdapterSource(hub.channel(practice_id), remote_practice, cache_seconds=cache_seconds)
        self._described: Adapter | None = None
        self._adapter: Adapter | None = None
        self.calendar: LastKnownCalendarData | None = None

    def online(self) -> bool:
        return self._hub.online(self._practice)

    async def get(self, ctx: CallContext) -> Adapter:
        if not self.online():
            if self._adapter is None:
                raise Unavailable("the practice's connector has not connected to this gateway yet")
            return self._adapter
        try:
            described = await self._remote.get(ctx)
        except Unavailable:
            if self._adapter is None:
                raise Unavailable("the practice's connector has not connected to this gateway yet") from None
            return self._adapter
        if described is not self._described:
            assert described.calendar is not None  # a remote practice always serves its calendar
            if self.calendar is None:
                self.calendar = LastKnownCalendarData(described.calendar, self.online)
            self.calendar.inner = described.calendar
            self._described = described
            self._adapter = dataclasses.replace(described, calendar=self.calendar)
        assert self._adapter is not None
        return self._adapter

    async def aclose(self) -> None:
        await self._remote.aclose()
