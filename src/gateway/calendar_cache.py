"""A practice's calendar configuration and profile, kept in memory between announced changes.

Every partner read names columns that are checked against the calendar, and ListCalendars is the
call partners make most. Reading the configuration from the PVS each time puts the cheapest call
behind whatever else the PVS is doing at that moment (the reference PVS has one SQLite connection;
a 24-month busy-time read holds it for tens of milliseconds), so one partner's heavy reads would
slow every other partner's light ones. The configuration changes rarely, and adapters that
announce their own changes (a `ChangeOutbox`) say when: a `CalendarConfigChanged` drops what is
kept. Adapters that announce nothing are not cached.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from gateway.forwarding_reader import ForwardingReader
from otv_sdk.changes import CalendarConfigChanged, Change, ChangeOutbox
from otv_sdk.models import Calendar, PracticeProfile
from otv_sdk.ports import CallContext, ReaderPort

__all__ = ["CalendarCache"]

T = TypeVar("T")


class CalendarCache(ForwardingReader):
    def __init__(self, inner: ReaderPort, outbox: ChangeOutbox) -> None:
        super().__init__(inner)
        self._generation = 0  # bumped by every configuration change; a read begun before it is stale
        self._calendar: Calendar | None = None
        self._profile: PracticeProfile | None = None
        outbox.subscribe(self._on_change)

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
        return await self._kept(self._calendar, lambda: self._inner.list_calendars(ctx), self._keep_calendar)

    async def get_practice(self, ctx: CallContext) -> PracticeProfile:
        return await self._kept(self._profile, lambda: self._inner.get_practice(ctx), self._keep_profile)
