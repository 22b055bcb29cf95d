"""Answering free-time and slot queries from an `AvailabilityEngine`.

Two ways to get an engine: build one for a single query from a reader's own data
(`engine_for_window`, what every adapter gets by default), or keep one current for the whole
24-month horizon (`EngineKeeper`, what the reference adapter does; queries are then array slices).
Slot pages are continued with an opaque token bound to the query it came from.
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

from otv_sdk.availability import AvailabilityEngine
from otv_sdk.errors import InvalidArgument
from otv_sdk.models import ColumnIntervals, Interval, Slot
from otv_sdk.timeline import IntervalArray, concatenate, from_datetime, to_datetime
from otv_sdk.timewindow import MAX_WINDOW_MONTHS, add_months

if TYPE_CHECKING:
    from otv_sdk.ports import CallContext, Page, ReaderPort, SlotQuery

__all__ = ["EngineKeeper", "engine_for_window", "find_slots_from", "free_time_from"]

_DAY = 86400


def _column_map(items: Sequence[ColumnIntervals]) -> dict[str, IntervalArray]:
    return {c.column_id: c.intervals for c in items}


async def load_engine(
    reader: ReaderPort, ctx: CallContext, lo: int, hi: int, clock: Callable[[], float] = time.time
) -> AvailabilityEngine:
    """Read everything the engine needs for [lo, hi) from the reader and build it."""
    calendar = await reader.list_calendars(ctx)
    profile = await reader.get_practice(ctx)
    span = Interval(to_datetime(lo), to_datetime(hi))
    columns = calendar.column_ids()
    working, busy, absences, predefined = await asyncio.gather(
        reader.list_working_hours(ctx, span, columns),
        reader.list_busy_times(ctx, span, columns),
        reader.list_absences(ctx, span, columns),
        reader.list_predefined_slots(ctx, span, columns),
    )
    blocked: dict[str, IntervalArray] = {}
    for column in busy:
        away = [a.interval for a in absences if a.column_id == column.column_id]
        blocked[column.column_id] = concatenate(column.intervals, IntervalArray.from_intervals(away))
    return AvailabilityEngine(
        time_zone=profile.time_zone,
        calendar=calendar,
        horizon=(lo, hi),
        working=_column_map(working),
        blocked=blocked,
        predefined_slots=None if predefined is None else _column_map(predefined),
        policy=reader.slot_policy(),
        clock=clock,
    )


def _margins(window: Interval) -> tuple[int, int]:
    # A day before (nothing needed) and two after: slots starting near the end need room to fit.
    return from_datetime(window.start) - _DAY, from_datetime(window.end) + 2 * _DAY


async def engine_for_window(reader: ReaderPort, ctx: CallContext, window: Interval) -> AvailabilityEngine:
    lo, hi = _margins(window)
    return await load_engine(reader, ctx, lo, hi)


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
    from otv_sdk.ports import Page

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
    the past). The owner keeps it current by calling the engine's `add_busy`/`remove_busy`/...
    as its calendar changes, or `invalidate()` when it cannot say what changed.
    """

    def __init__(self, reader: ReaderPort, clock: Callable[[], float] = time.time) -> None:
        self._reader = reader
        self._clock = clock
        self._engine: AvailabilityEngine | None = None
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._engine = None

    @property
    def current(self) -> AvailabilityEngine | None:
        return self._engine

    async def engine_for(self, ctx: CallContext, window: Interval) -> AvailabilityEngine:
        lo, hi = _margins(window)
        engine = self._engine
        if engine is not None and engine.covers(lo, hi):
            return engine
        async with self._lock:
            engine = self._engine
            if engine is not None and engine.covers(lo, hi):
                return engine
            # A week back (windows often start at midnight or earlier today) and a month beyond
            # the longest window, so as days pass the engine is rebuilt rarely.
            now = to_datetime(int(self._clock()))
            standard_lo = from_datetime(now - timedelta(days=7))
            standard_hi = from_datetime(add_months(now, MAX_WINDOW_MONTHS + 1)) + 2 * _DAY
            if lo < standard_lo or hi > standard_hi:
                # Outside the kept horizon: answer this query alone, keep the standard engine.
                return await load_engine(self._reader, ctx, lo, hi, self._clock)
            self._engine = await load_engine(self._reader, ctx, standard_lo, standard_hi, self._clock)
            return self._engine
