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
- **FindSlots**: the claims are busy time inside the engine's query (`AvailabilityEngine.slots`
  with `taken`): a start `s` is offered only if no claim in its column overlaps
  `[s, s + duration + buffer)`, exactly as for busy time (docs/availability.md), so a claim
  protects the buffer of an earlier slot like a written appointment, and a page of N has N slots
  whenever N exist, in one engine query.

The partner's page token is the gateway's own: the position after the last slot served (start,
column order) and a digest of the query, sealed with the gateway's field cipher (authenticated
encryption), so it is opaque, about 100 characters (well under `limits.MAX_TOKEN`), valid on every
replica sharing the keys, and anything the gateway did not issue for this query is INVALID_ARGUMENT
naming `page_token`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from gateway.encryption import FieldCipher
from gateway.forwarding_reader import ForwardingReader
from gateway.practice_reader import PracticeReader
from gateway.sliced_work import run_sliced
from otv_sdk.errors import InvalidArgument
from otv_sdk.models import ColumnIntervals, Interval, Slot
from otv_sdk.ports import CallContext, Page, SlotQuery
from otv_sdk.timeline import IntervalArray, concatenate, from_datetime, normalize, subtract, to_datetime

if TYPE_CHECKING:
    from gateway.booking import BookingDesk

__all__ = ["ClaimAwareReader", "ClaimSource", "PartnerAvailability"]

# The associated data the slot page tokens are sealed with: a sealed value from elsewhere does not open.
_TOKEN_PURPOSE = "otv.FindSlots.page_token"
_SLOTS_PER_STEP = 250


class ClaimSource(Protocol):
    def __call__(
        self, column_ids: Sequence[str], lo: int, hi: int, ignore: str | None = None, *, written: bool = True
    ) -> Awaitable[dict[str, IntervalArray]]:
        """Valid claims overlapping [lo, hi) per column (all columns if none are named), sorted by
        start; `ignore` leaves out one owner's claim, `written=False` the bookings already in the PVS."""
        ...


def _slots(triples: Sequence[tuple[str, int, int]]) -> Generator[None, None, list[Slot]]:
    """The page's slots as objects, a few hundred per step (a page of 1000 takes about 2 ms)."""
    slots: list[Slot] = []
    for at in range(0, len(triples), _SLOTS_PER_STEP):
        slots.extend(Slot(c, to_datetime(s), to_datetime(e)) for c, s, e in triples[at : at + _SLOTS_PER_STEP])
        yield
    return slots


def _per_column(
    computed: Sequence[ColumnIntervals],
    claims: Mapping[str, IntervalArray],
    combine: Callable[[IntervalArray, IntervalArray], IntervalArray],
) -> Generator[None, None, list[ColumnIntervals]]:
    """Each column with its claims combined in, one column per step (sliced_work.py)."""
    result = []
    for column in computed:
        claimed = claims.get(column.column_id)
        result.append(
            column if claimed is None else ColumnIntervals(column.column_id, combine(column.intervals, claimed))
        )
        yield
    return result


def _query_key(query: SlotQuery) -> str:
    material = json.dumps(
        ["slots", query.appointment_type_id, query.window.start.isoformat(), query.window.end.isoformat(),
         list(query.column_ids)]
    )  # fmt: skip
    return hashlib.sha256(material.encode()).hexdigest()[:16]


class PartnerAvailability:
    """Busy time, free time and slots of one practice with the gateway's claims in them."""

    def __init__(self, reader: PracticeReader, claims: ClaimSource, cipher: FieldCipher) -> None:
        self._reader = reader
        self._claims = claims
        self._cipher = cipher

    async def list_busy_times(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        busy = await self._reader.list_busy_times(ctx, window, column_ids)
        lo, hi = from_datetime(window.start), from_datetime(window.end)
        pending = await self._claims(column_ids, lo, hi, written=False)
        return await run_sliced(_per_column(busy, pending, lambda c, p: concatenate(c, p.clipped(lo, hi))))

    async def get_free_time(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str], ignore: str | None = None
    ) -> list[ColumnIntervals]:
        free = await self._reader.get_free_time(ctx, window, column_ids)
        claimed = await self._claims(column_ids, from_datetime(window.start), from_datetime(window.end), ignore)
        return await run_sliced(_per_column(free, claimed, lambda c, p: subtract(c, normalize(p))))

    async def find_slots(self, ctx: CallContext, query: SlotQuery, ignore: str | None = None) -> Page[Slot]:
        calendar = await self._reader.list_calendars(ctx)
        kind = next((t for t in calendar.appointment_types if t.id == query.appointment_type_id), None)
        if kind is None:
            raise InvalidArgument.field("appointment_type", "is not an appointment type of this practice")
        need = int((kind.duration + kind.buffer).total_seconds())
        lo, hi = from_datetime(query.window.start), from_datetime(query.window.end)
        # Claims are busy time of this query: the engine leaves out every start whose
        # [start, start + duration + buffer) one overlaps, so a page of N has N slots whenever N exist.
        claimed = await self._claims(query.column_ids, lo, hi + need, ignore)
        size = query.page.page_size
        found = await self._reader.slot_array(
            ctx,
            kind.id,
            query.window,
            query.column_ids,
            limit=size + 1,
            after=self._position(query),
            taken={c: normalize(taken) for c, taken in claimed.items()},
        )
        triples = found.triples()
        page, more = triples[:size], len(triples) > size
        token = ""
        if more and page:
            last_column, last_start, _ = page[-1]
            token = self._token(query, (last_start, found.column_ids.index(last_column)))
        return Page(await run_sliced(_slots(page)), token)

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

    def __init__(self, inner: PracticeReader, desk: BookingDesk) -> None:
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
