"""ReaderService for one practice, computed by the gateway from the PVS's raw data.

Every transport (in-process plugin, dialled remote, connector, snapshot uploads) hands the gateway
the same data port; this is where it becomes working time, free time and slots, with one engine
per practice and one set of rules. When the practice's changes are announced (its feed carries the
adapter's outbox, the connector's and the dialled remote's change streams, snapshot diffs), the
engine is kept for the whole horizon and each change is applied to it, so a query is array slices.
A practice whose changes nobody announces gets an engine built for each query from fresh reads:
slower, never stale.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Mapping, Sequence

from gateway.sliced_work import run_sliced
from otv_rules.availability import AvailabilityEngine, SlotArray, SlotPolicy
from otv_rules.availability_service import EngineKeeper, engine_for_window, find_slots_from, free_time_from
from otv_rules.working_time import working_time
from otv_sdk.changes import BusyTimeChanged, CalendarConfigChanged, Change
from otv_sdk.models import Absence, Calendar, ColumnIntervals, Interval, PracticeProfile, Slot
from otv_sdk.ports import CalendarDataPort, CallContext, Page, ReaderPort, SlotQuery
from otv_sdk.timeline import EMPTY, IntervalArray, from_datetime

__all__ = ["PracticeReader"]


def _clipped(
    found: Mapping[str, IntervalArray], wanted: Sequence[str], lo: int, hi: int
) -> Generator[None, None, list[ColumnIntervals]]:
    """Each wanted column's busy time, sorted and cut to [lo, hi), one column per step (24 months
    of a whole practice take about a millisecond: run in slices, sliced_work.py)."""
    result = []
    for column_id in wanted:
        intervals = found.get(column_id)
        result.append(ColumnIntervals(column_id, EMPTY if intervals is None else intervals.sorted().clipped(lo, hi)))
        yield
    return result


class PracticeReader(ReaderPort):
    def __init__(
        self,
        data: CalendarDataPort,
        policy: SlotPolicy | None = None,
        *,
        announced: bool = False,
        source: CalendarDataPort | None = None,
        online: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`announced`: every change of the practice reaches `apply`, so an engine may be kept.
        `source`: the adapter's own port behind any wrapping of `data`, to tell when it was replaced.
        `online`: for a practice that drops off (a connector): while offline, answers come from the
        last known data per query, so they carry its age, rather than from a kept engine."""
        self.data = data
        self.source = source or data
        self._online = online
        self.policy = policy or SlotPolicy()
        self._clock = clock
        self._keeper = EngineKeeper(data, self.policy, clock) if announced else None

    @property
    def kept_engine(self) -> AvailabilityEngine | None:
        """The engine kept for the horizon, if any (None until the first query, or never kept)."""
        return None if self._keeper is None else self._keeper.current

    def apply(self, change: Change) -> None:
        """Keep the engine current with one change from the practice's feed."""
        if self._keeper is None:
            return
        if isinstance(change, CalendarConfigChanged):
            self._keeper.invalidate()
        elif isinstance(change, BusyTimeChanged):
            for interval in change.removed:
                self._keeper.remove_busy(change.column_id, from_datetime(interval.start), from_datetime(interval.end))
            for interval in change.added:
                self._keeper.add_busy(change.column_id, from_datetime(interval.start), from_datetime(interval.end))

    async def _engine(self, ctx: CallContext, window: Interval) -> AvailabilityEngine:
        if self._keeper is not None and (self._online is None or self._online()):
            return await self._keeper.engine_for(ctx, window)
        return await engine_for_window(self.data, ctx, window, self.policy)

    async def get_practice(self, ctx: CallContext) -> PracticeProfile:
        return await self.data.get_practice(ctx)

    async def list_calendars(self, ctx: CallContext) -> Calendar:
        return await self.data.list_calendars(ctx)

    async def list_working_hours(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        kept = None if self._keeper is None else self._keeper.current
        lo, hi = from_datetime(window.start), from_datetime(window.end)
        if kept is not None and kept.covers(lo, hi):
            return kept.working_time(lo, hi, column_ids)
        calendar, profile = await self.data.list_calendars(ctx), await self.data.get_practice(ctx)
        rules = await self.data.list_working_time_rules(ctx, window)
        return working_time(calendar, rules, profile.time_zone, window, column_ids or calendar.column_ids())

    async def list_absences(self, ctx: CallContext, window: Interval, column_ids: Sequence[str]) -> list[Absence]:
        found = await self.data.list_absences(ctx, window, column_ids)
        wanted = set(column_ids)
        kept = [
            a
            for a in found
            if (not wanted or a.column_id in wanted) and a.interval.start < window.end and a.interval.end > window.start
        ]
        order = {c: i for i, c in enumerate(column_ids)}
        return sorted(kept, key=lambda a: (order.get(a.column_id, len(order)), a.column_id, a.interval.start))

    async def list_busy_times(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        lo, hi = from_datetime(window.start), from_datetime(window.end)
        found = {c.column_id: c.intervals for c in await self.data.list_busy_times(ctx, window, column_ids)}
        wanted = column_ids or (await self.data.list_calendars(ctx)).column_ids()
        return await run_sliced(_clipped(found, wanted, lo, hi))

    async def get_free_time(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        return free_time_from(await self._engine(ctx, window), window, column_ids)

    async def find_slots(self, ctx: CallContext, query: SlotQuery) -> Page[Slot]:
        return find_slots_from(await self._engine(ctx, query.window), query)

    async def slot_array(
        self,
        ctx: CallContext,
        type_id: str,
        window: Interval,
        column_ids: Sequence[str],
        *,
        limit: int,
        after: tuple[int, int] | None,
        taken: Mapping[str, IntervalArray],
    ) -> SlotArray:
        """Slots with more busy time for this query (the gateway's claims), from position `after` on.

        A column at a time, in slices that let other calls in between (sliced_work.py)."""
        engine = await self._engine(ctx, window)
        lo, hi = from_datetime(window.start), from_datetime(window.end)
        return await run_sliced(engine.slot_steps(type_id, lo, hi, column_ids, limit=limit, after=after, taken=taken))
