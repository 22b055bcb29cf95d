"""What partners see of a practice's calendar: the computed answers with the gateway's claims in them.

The gateway's engine (`practice_reader.py`) computes busy time, free time and slots from the PVS's
calendar data, which holds what is written in the PVS. The gateway also
holds **claims** (`booking.py`): valid holds, bookings being written or waiting for the practice,
and bookings it wrote into the PVS. A claim must count exactly as an appointment in the PVS does:

- **ListBusyTimes**: the PVS's busy time plus the claims the PVS does not list yet (holds, and
  bookings not yet written). A booking already written into the PVS (booked, with a PVS id) is
  listed by the PVS itself; listing its claim again would be a double appointment.
- **GetFreeTime**: the PVS's free time minus every claim. Subtracting a claim the PVS already
  accounts for changes nothing, so a booking is never subtracted twice in effect, and one the PVS
  does not reflect yet (a remote PVS that is slow to update) is still out.
- **FindSlots**: a start `s` of a type is offered when the PVS offers it and no claim in its column
  overlaps `[s, s + duration + buffer)`, as the engine requires of busy time (docs/availability.md),
  so a claim protects the buffer of an earlier slot like a written appointment. Pages stay full: the
  gateway asks the adapter for one more slot than the page holds, drops claimed ones and continues
  (with larger pages) until it has the page and knows whether another follows. It continues an
  adapter search by narrowing the window to start at the last slot it saw, never with the adapter's
  own page tokens, so adapter tokens never reach partners and partners cannot send any.

The partner's page token is the gateway's own: the position after the last slot served (start,
column order) and a digest of the query, sealed with the gateway's field cipher (authenticated
encryption), so it is opaque, about 100 characters (well under `limits.MAX_TOKEN`), valid on every
replica sharing the keys, and anything the gateway did not issue for this query is INVALID_ARGUMENT
naming `page_token`. Starting the adapter's window at the last start gives the same slots after it
as the whole window would: a slot is offered when the window contains its start.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Protocol

from gateway.encryption import FieldCipher
from gateway.forwarding_reader import ForwardingReader
from otv_sdk.conversion import MAX_PAGE_SIZE
from otv_sdk.errors import InvalidArgument
from otv_sdk.models import ColumnIntervals, Interval, Slot
from otv_sdk.ports import CallContext, Page, PageRequest, ReaderPort, SlotQuery
from otv_sdk.timeline import IntervalArray, concatenate, from_datetime, normalize, subtract, to_datetime

if TYPE_CHECKING:
    from gateway.booking import BookingDesk

__all__ = ["ClaimAwareReader", "ClaimSource", "PartnerAvailability"]

# The associated data the slot page tokens are sealed with: a sealed value from elsewhere does not open.
_TOKEN_PURPOSE = "otv.FindSlots.page_token"


class ClaimSource(Protocol):
    def __call__(
        self, column_ids: Sequence[str], lo: int, hi: int, ignore: str | None = None, *, written: bool = True
    ) -> Awaitable[dict[str, IntervalArray]]:
        """Valid claims overlapping [lo, hi) per column (all columns if none are named), sorted by
        start; `ignore` leaves out one owner's claim, `written=False` the bookings already in the PVS."""
        ...


def _query_key(query: SlotQuery) -> str:
    material = json.dumps(
        ["slots", query.appointment_type_id, query.window.start.isoformat(), query.window.end.isoformat(),
         list(query.column_ids)]
    )  # fmt: skip
    return hashlib.sha256(material.encode()).hexdigest()[:16]


class PartnerAvailability:
    """Busy time, free time and slots of one practice with the gateway's claims in them."""

    def __init__(self, reader: ReaderPort, claims: ClaimSource, cipher: FieldCipher) -> None:
        self._reader = reader
        self._claims = claims
        self._cipher = cipher

    async def list_busy_times(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        busy = await self._reader.list_busy_times(ctx, window, column_ids)
        lo, hi = from_datetime(window.start), from_datetime(window.end)
        pending = await self._claims(column_ids, lo, hi, written=False)
        return [
            ColumnIntervals(c.column_id, concatenate(c.intervals, pending[c.column_id].clipped(lo, hi)))
            if c.column_id in pending
            else c
            for c in busy
        ]

    async def get_free_time(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str], ignore: str | None = None
    ) -> list[ColumnIntervals]:
        free = await self._reader.get_free_time(ctx, window, column_ids)
        claimed = await self._claims(column_ids, from_datetime(window.start), from_datetime(window.end), ignore)
        return [
            ColumnIntervals(c.column_id, subtract(c.intervals, normalize(claimed[c.column_id])))
            if c.column_id in claimed
            else c
            for c in free
        ]

    async def find_slots(self, ctx: CallContext, query: SlotQuery, ignore: str | None = None) -> Page[Slot]:
        calendar = await self._reader.list_calendars(ctx)
        kind = next((t for t in calendar.appointment_types if t.id == query.appointment_type_id), None)
        if kind is None:
            raise InvalidArgument.field("appointment_type", "is not an appointment type of this practice")
        order = {column_id: index for index, column_id in enumerate(calendar.column_ids())}
        need = int((kind.duration + kind.buffer).total_seconds())
        size = query.page.page_size

        def position(slot: Slot) -> tuple[int, int]:  # the engine's order: start, then column order
            return from_datetime(slot.start), order.get(slot.column_id, len(order))

        cursor = self._position(query)  # the last slot seen, served or claimed
        served: list[Slot] = []
        fetch, adapter_token = size + 1, ""
        while True:
            start = query.window.start if cursor is None else max(query.window.start, to_datetime(cursor[0]))
            if start >= query.window.end:
                break
            request = PageRequest(fetch, adapter_token)
            found = await self._reader.find_slots(
                ctx, SlotQuery(kind.id, Interval(start, query.window.end), query.column_ids, request)
            )
            fresh = [s for s in found.items if cursor is None or position(s) > cursor]
            served += await self._unclaimed(fresh, need, query.column_ids, ignore)
            if len(served) > size or not found.next_page_token:
                break
            if fresh:
                cursor, adapter_token = position(fresh[-1]), ""
            elif fetch >= MAX_PAGE_SIZE:
                # More than a full adapter page of slots at the cursor's start (more columns than that):
                # only the adapter's own continuation of the same query moves on.
                adapter_token = found.next_page_token
            fetch = min(2 * fetch, MAX_PAGE_SIZE)
        page = served[:size]
        more = len(served) > size and bool(page)
        return Page(page, self._token(query, position(page[-1])) if more else "")

    async def _unclaimed(
        self, slots: Sequence[Slot], need: int, column_ids: Sequence[str], ignore: str | None
    ) -> list[Slot]:
        """The slots whose [start, start + need) no claim in their column overlaps."""
        if not slots:
            return []
        starts = [from_datetime(s.start) for s in slots]
        claimed = await self._claims(column_ids, min(starts), max(starts) + need, ignore)
        merged = {c: normalize(taken) for c, taken in claimed.items()}
        bounds = {c: (taken.starts.tolist(), taken.ends.tolist()) for c, taken in merged.items()}
        kept = []
        for slot, start in zip(slots, starts, strict=True):
            taken = bounds.get(slot.column_id)
            if taken is not None:
                begins, ends = taken
                first = bisect.bisect_right(ends, start)  # the first claim ending after the start
                if first < len(ends) and begins[first] < start + need:
                    continue
            kept.append(slot)
        return kept

    def _token(self, query: SlotQuery, after: tuple[int, int]) -> str:
        payload = json.dumps({"q": _query_key(query), "s": after[0], "c": after[1]}, separators=(",", ":"))
        return self._cipher.seal(payload, _TOKEN_PURPOSE)

    def _position(self, query: SlotQuery) -> tuple[int, int] | None:
        token = query.page.page_token
        if not token:
            return None
        try:
            payload = json.loads(self._cipher.open(token, _TOKEN_PURPOSE))
            key, start, column = payload["q"], payload["s"], payload["c"]
            if not isinstance(start, int) or not isinstance(column, int):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise InvalidArgument.field("page_token", "is not a token this server issued") from None
        if key != _query_key(query):
            raise InvalidArgument.field("page_token", "belongs to a different query; repeat the query's parameters")
        return start, column


class ClaimAwareReader(ForwardingReader):
    """The practice's reader as partners see it: time the gateway has promised is not free."""

    def __init__(self, inner: ReaderPort, desk: BookingDesk) -> None:
        super().__init__(inner)
        self._view = desk.availability

    async def list_busy_times(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        return await self._view.list_busy_times(ctx, window, column_ids)

    async def get_free_time(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        return await self._view.get_free_time(ctx, window, column_ids)

    async def find_slots(self, ctx: CallContext, query: SlotQuery) -> Page[Slot]:
        return await self._view.find_slots(ctx, query)
