"""Answering free-time and slot queries from an `AvailabilityEngine` built from a PVS's raw data.

The engine is built from what a vendor's `CalendarDataPort` hands over: configuration, working-time
rules, absences, calendar entries (and predefined slots for slot-list PVSs). Two ways to get one:
for a single query (`engine_for_window`, for a practice whose changes nobody announces), or kept
current for the whole 24-month horizon (`EngineKeeper`: the gateway applies announced changes to it,
so queries are array slices). Slot pages are continued with an opaque token bound to the query.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from otv_rules.availability import AvailabilityEngine, SlotPolicy
from otv_rules.working_time import working_time
from otv_sdk.errors import InvalidArgument
from otv_sdk.models import ColumnIntervals, Interval, Slot
from otv_sdk.ports import Page
from otv_sdk.timeline import EMPTY, IntervalArray, concatenate, from_datetime, to_datetime
from otv_sdk.timewindow import MAX_WINDOW_MONTHS, add_months

if TYPE_CHECKING:
    from otv_sdk.ports import CalendarDataPort, CallContext, SlotQuery

__all__ = ["EngineKeeper", "engine_for_window", "find_slots_from", "free_time_from"]

_DAY = 86400


def _column_map(items: Sequence[ColumnIntervals]) -> dict[str, IntervalArray]:
    return {c.column_id: c.intervals for c in items}


async def load_engine(
    data: CalendarDataPort,
    ctx: CallContext,
    lo: int,
    hi: int,
    policy: SlotPolicy | None = None,
    clock: Callable[[], float] = time.time,
) -> AvailabilityEngine:
    """Read everything the engine needs for [lo, hi) from the PVS's data and build it."""
    calendar, profile = await asyncio.gather(data.list_calendars(ctx), data.get_practice(ctx))
    span = Interval(to_datetime(lo), to_datetime(hi))
    columns = calendar.column_ids()
    rules, busy, absences, predefined = await asyncio.gather(
        data.list_working_time_rules(ctx, span),
        data.list_busy_times(ctx, span, columns),
        data.list_absences(ctx, span, columns),
        data.list_predefined_slots(ctx, span, columns),
    )
    working = working_time(calendar, rules, profile.time_zone, span, columns)
    away: dict[str, list[Interval]] = {}
    for absence in absences:
        away.setdefault(absence.column_id, []).append(absence.interval)
    entries = _column_map(busy)
    blocked = {
        column_id: concatenate(entries.get(column_id, EMPTY), IntervalArray.from_intervals(away.get(column_id, [])))
        for column_id in columns
    }
    return AvailabilityEngine(
        time_zone=profile.time_zone,
        calendar=calendar,
        horizon=(lo, hi),
        working=_column_map(working),
        blocked=blocked,
        predefined_slots=None if predefined is None else _column_map(predefined),
        policy=policy,
        clock=clock,
    )


def _margins(window: Interval) -> tuple[int, int]:
    # A day before (nothing needed) and two after: slots starting near the end need room to fit.
    return from_datetime(window.start) - _DAY, from_datetime(window.end) + 2 * _DAY


async def engine_for_window(
    data: CalendarDataPort, ctx: CallContext, window: Interval, policy: SlotPolicy | None = None
) -> AvailabilityEngine:
    lo, hi = _margins(window)
    return await load_engine(data, ctx, lo, hi, policy)


def free_time_from(engine: AvailabilityEngine, window: Interval, column_ids: Sequence[str]) -> list[ColumnIntervals]:
    return engine.free_time(from_datetime(window.start), from_datetime(window.end), column_ids)


def _query_key(query: SlotQuery) -> str:
    material = json.dumps(
        [query.appointment_type_id, query.window.start.isoformat(), query.window.end.isoformat(), query.column_ids]
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def _encode_token(query: SlotQuery, start: int, position: int) -> str:
    payload = json.dumps({"q": _query_key(query), "s": start, "c": position}).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def _decode_token(query: SlotQuery) -> tuple[int, int] | None:
    token = query.page.page_token
    if not token:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        key, start, position = payload["q"], int(payload["s"]), int(payload["c"])
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument.field("page_token", "is not a token this server issued") from None
    if key != _query_key(query):
        raise InvalidArgument.field("page_token", "belongs to a different query; repeat the query's parameters")
    return start, position


def find_slots_from(engine: AvailabilityEngine, query: SlotQuery) -> Page[Slot]:
    after = _decode_token(query)
    found = engine.slots(
        query.appointment_type_id,
        from_datetime(query.window.start),
        from_datetime(query.window.end),
        query.column_ids,
        limit=query.page.page_size + 1,
        after=after,
    )
    triples = found.triples()
    page, more = triples[: query.page.page_size], len(triples) > query.page.page_size
    token = ""
    if more and page:
        last_column, last_start, _ = page[-1]
        token = _encode_token(query, last_start, found.column_ids.index(last_column))
    return Page([Slot(c, to_datetime(s), to_datetime(e)) for c, s, e in page], token)


class EngineKeeper:
    """Keeps one engine for [now - 7 days, now + 25 months] and hands it out.

    Built on first use; rebuilt when a query reaches outside it (as days pass, or for a window in
    the past). The owner keeps it current by calling `add_busy`/`remove_busy` as the calendar
    changes, or `invalidate()` when it cannot say what changed. A change that arrives while an
    engine is being built may or may not be in what was read, so that engine answers the query
    that built it and is not kept: the next query builds afresh.
    """

    def __init__(
        self,
        data: CalendarDataPort,
        policy: SlotPolicy | None = None,
        clock: Callable[[], float] = time.time,
        *,
        max_age_seconds: float = 300.0,
    ) -> None:
        """`max_age_seconds` bounds how long a change the owner never heard of can go unseen."""
        self._data = data
        self._policy = policy
        self._clock = clock
        self._max_age = max_age_seconds
        self._built_at = 0.0
        self._engine: AvailabilityEngine | None = None
        self._generation = 0  # bumped by every change; a build that saw a bump is not kept
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._generation += 1
        self._engine = None

    def add_busy(self, column_id: str, start: int, end: int) -> None:
        self._apply(lambda engine: engine.add_busy(column_id, start, end))

    def remove_busy(self, column_id: str, start: int, end: int) -> None:
        self._apply(lambda engine: engine.remove_busy(column_id, start, end))

    def _apply(self, change: Callable[[AvailabilityEngine], None]) -> None:
        self._generation += 1
        if self._engine is None:
            return
        try:
            change(self._engine)
        except (KeyError, ValueError):  # a column or entry the engine does not know: read afresh
            self._engine = None

    @property
    def current(self) -> AvailabilityEngine | None:
        return self._engine

    def _usable(self, lo: int, hi: int) -> AvailabilityEngine | None:
        engine = self._engine
        if engine is None or not engine.covers(lo, hi) or time.monotonic() - self._built_at > self._max_age:
            return None
        return engine

    async def engine_for(self, ctx: CallContext, window: Interval) -> AvailabilityEngine:
        lo, hi = _margins(window)
        engine = self._usable(lo, hi)
        if engine is not None:
            return engine
        async with self._lock:
            engine = self._usable(lo, hi)
            if engine is not None:
                return engine
            # A week back (windows often start at midnight or earlier today) and a month beyond
            # the longest window, so as days pass the engine is rebuilt rarely.
            now = to_datetime(int(self._clock()))
            standard_lo = from_datetime(now - timedelta(days=7))
            standard_hi = from_datetime(add_months(now, MAX_WINDOW_MONTHS + 1)) + 2 * _DAY
            if lo < standard_lo or hi > standard_hi:
                # Outside the kept horizon: answer this query alone, keep the standard engine.
                return await load_engine(self._data, ctx, lo, hi, self._policy, self._clock)
            generation, started = self._generation, time.monotonic()
            built = await load_engine(self._data, ctx, standard_lo, standard_hi, self._policy, self._clock)
            if generation == self._generation:
                self._engine, self._built_at = built, started
            return built
