"""A practice's calendar configuration and profile, kept in memory between announced changes.

Every partner read names columns that are checked against the calendar, and ListCalendars is the
call partners make most. Reading the configuration from the PVS each time puts the cheapest call
behind whatever else the PVS is doing at that moment (the reference PVS has one SQLite connection;
a 24-month busy-time read holds it for tens of milliseconds), so one partner's heavy reads would
slow every other partner's light ones. The configuration changes rarely, and practices that
announce their changes (an adapter's outbox, a remote's or a connector's change stream, all of
which reach the practice's feed) say when: a `CalendarConfigChanged` drops what is kept.
Practices that announce nothing are not cached.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from otv_sdk.changes import CalendarConfigChanged, Change
from otv_sdk.models import Absence, Calendar, ColumnIntervals, Interval, PracticeProfile, WorkingTimeRules
from otv_sdk.ports import CalendarDataPort, CallContext

__all__ = ["CalendarCache"]

T = TypeVar("T")


class CalendarCache(CalendarDataPort):
    def __init__(self, inner: CalendarDataPort, subscribe: Callable[[Callable[[Change], None]], None]) -> None:
        """`subscribe` registers for every change of the practice (its feed's `listen`)."""
        self._inner = inner
        self._generation = 0  # bumped by every configuration change; a read begun before it is stale
        self._calendar: Calendar | None = None
        self._profile: PracticeProfile | None = None
        subscribe(self._on_change)

    def _on_change(self, change: Change) -> None:
        if isinstance(change, CalendarConfigChanged):
            self._generation += 1
            self._calendar = None
            self._profile = None

    async def _kept(self, current: T | None, read: Callable[[], Awaitable[T]], keep: Callable[[T], None]) -> T:
        if current is not None:
            return current
        generation = self._generation
        value = await read()
        if generation == self._generation:  # no change announced while reading
            keep(value)
        return value

    def _keep_calendar(self, calendar: Calendar) -> None:
        self._calendar = calendar

    def _keep_profile(self, profile: PracticeProfile) -> None:
        self._profile = profile

    async def list_calendars(self, ctx: CallContext) -> Calendar:
        if self._calendar is not None:  # the common case, on every call: nothing to build
            return self._calendar
        return await self._kept(None, lambda: self._inner.list_calendars(ctx), self._keep_calendar)

    async def get_practice(self, ctx: CallContext) -> PracticeProfile:
        if self._profile is not None:
            return self._profile
        return await self._kept(None, lambda: self._inner.get_practice(ctx), self._keep_profile)

    async def list_working_time_rules(self, ctx: CallContext, window: Interval) -> WorkingTimeRules:
        return await self._inner.list_working_time_rules(ctx, window)

    async def list_absences(self, ctx: CallContext, window: Interval, column_ids: Sequence[str]) -> list[Absence]:
        return await self._inner.list_absences(ctx, window, column_ids)

    async def list_busy_times(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        return await self._inner.list_busy_times(ctx, window, column_ids)

    async def list_predefined_slots(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals] | None:
        return await self._inner.list_predefined_slots(ctx, window, column_ids)
