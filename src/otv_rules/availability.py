"""The availability engine: free time and bookable slots of a whole practice, kept current.

Per column the engine keeps three interval arrays (UTC epoch seconds, see `timeline.py`):
working time (weekly hours with shifts and closed days applied, as the adapter reports it),
blocked time (appointments, reservations, absences: may overlap), and free time = working minus
blocked, normalised. Free time is maintained incrementally: a booking carves its interval out, a
cancellation recomputes only the stretch it covered. Queries then only slice arrays.

Slots for an appointment type come from the column's free time minus the booking areas
(Terminvorgabebereiche) that do not admit the type, minus holds that are still valid. That
per-(column, type) "bookable" time is cached and dropped when the column changes. A slot start
lies on the practice's grid in local wall-clock time (every 5, 10, 15 ... minutes), at least the
type's lead time from now, at most its horizon ahead, and [start, start + duration + buffer) lies
inside bookable time, so a slot never straddles the end of working time, an absence, a busy
interval or a foreign booking area. For a PVS whose calendar is a list of predefined slots
(DURIA), the candidates are the PVS's free slot starts instead of the grid, and bookable time is
limited to those slots: a slot the practice deleted is not offered, and PVS slots outside the
online offer are ignored.

Time is UTC seconds throughout; the practice's time zone enters through the local-time grid and
the booking areas' wall-clock spans (`wallclock.py`, exact on daylight-saving days).
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast

import numpy as np
import numpy.typing as npt

from otv_rules.wallclock import LocalDays, days_for
from otv_sdk.errors import InvalidArgument
from otv_sdk.models import AppointmentType, BookingArea, Calendar, ColumnIntervals
from otv_sdk.timeline import EMPTY, IntervalArray, Seconds, intersect, normalize, subtract, union

__all__ = ["AvailabilityEngine", "OutsideHorizon", "SlotArray", "SlotPolicy"]

T = TypeVar("T")

_MINUTE = 60
# How often a paused slot search starts over after a change before it runs to the end at once.
_RESTARTS = 3


def _finish(steps: Generator[None, None, T]) -> T:
    """Run a stepwise computation to its end at once."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return cast(T, done.value)


class OutsideHorizon(ValueError):
    """A query reaches beyond the time the engine was built for; rebuild or build one for it."""


@dataclass(frozen=True, slots=True)
class SlotPolicy:
    """How a practice offers slots online."""

    grid_minutes: int = 5

    def __post_init__(self) -> None:
        if not 1 <= self.grid_minutes <= 24 * 60 or (24 * 60) % self.grid_minutes:
            raise ValueError("grid_minutes must divide a day (5, 10, 15, 20, 30, 60, ...)")


@dataclass(frozen=True, slots=True, eq=False)
class SlotArray:
    """Slots in start order (ties by column order): column positions and start seconds."""

    column_ids: tuple[str, ...]
    columns: npt.NDArray[np.int32]
    starts: Seconds
    duration: int

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def triples(self) -> list[tuple[str, int, int]]:
        """(column id, start, end) per slot."""
        return [
            (self.column_ids[c], s, s + self.duration)
            for c, s in zip(self.columns.tolist(), self.starts.tolist(), strict=True)
        ]


@dataclass(slots=True, eq=False)
class _Column:
    working: IntervalArray
    blocked_starts: Seconds
    blocked_ends: Seconds
    longest_block: int
    free: IntervalArray
    predefined_starts: Seconds | None = None  # starts of the PVS's free slots, for slot-list PVSs
    predefined_union: IntervalArray | None = None  # the time those slots cover
    bookable: dict[str, IntervalArray] = field(default_factory=dict)


def _carve(items: IntervalArray, lo: int, hi: int) -> IntervalArray:
    """A normalised array without [lo, hi)."""
    first = int(np.searchsorted(items.ends, lo, side="right"))
    last = int(np.searchsorted(items.starts, hi, side="left"))
    if first >= last:
        return items
    head_s, head_e = [], []
    if items.starts[first] < lo:
        head_s.append(int(items.starts[first]))
        head_e.append(lo)
    if items.ends[last - 1] > hi:
        head_s.append(hi)
        head_e.append(int(items.ends[last - 1]))
    return IntervalArray(
        np.concatenate((items.starts[:first], np.array(head_s, dtype=np.int64), items.starts[last:])),
        np.concatenate((items.ends[:first], np.array(head_e, dtype=np.int64), items.ends[last:])),
    )


def _splice(items: IntervalArray, lo: int, hi: int, pieces: IntervalArray) -> IntervalArray:
    """Replace the part of a normalised array inside [lo, hi) with pieces (normalised, inside it)."""
    carved = _carve(items, lo, hi)
    at = int(np.searchsorted(carved.starts, lo, side="left"))
    # Neighbours may touch the new pieces; merge just that neighbourhood.
    left, right = max(at - 1, 0), min(at + 1, len(carved))
    local = normalize(
        IntervalArray(
            np.concatenate((carved.starts[left:right], pieces.starts)),
            np.concatenate((carved.ends[left:right], pieces.ends)),
        )
    )
    return IntervalArray(
        np.concatenate((carved.starts[:left], local.starts, carved.starts[right:])),
        np.concatenate((carved.ends[:left], local.ends, carved.ends[right:])),
    )


def _grid_starts(range_lo: Seconds, range_hi: Seconds, grid: int, days: LocalDays) -> Seconds:
    """Every instant in [range_lo[i], range_hi[i]] (inclusive) whose local time is on the grid."""
    if range_lo.shape[0] == 0:
        return range_lo
    # Offsets are constant between transitions: split ranges there so each piece has one offset.
    # Only transitions inside the ranges matter (usually none); splitting unsorts the ranges.
    split = False
    inside = days.transitions[
        np.searchsorted(days.transitions, range_lo[0], side="right") : np.searchsorted(
            days.transitions, range_hi[-1], side="right"
        )
    ]
    for transition in inside.tolist():
        crossing = (range_lo < transition) & (range_hi >= transition)
        if crossing.any():
            split = True
            range_lo = np.concatenate((range_lo, np.full(int(crossing.sum()), transition, dtype=np.int64)))
            range_hi = np.concatenate((np.where(crossing, transition - 1, range_hi), range_hi[crossing]))
    offset = days.offset_at(range_lo)
    first = -((-(range_lo + offset)) // grid) * grid - offset  # ceil to the grid in local time
    counts = np.where(range_hi >= first, (range_hi - first) // grid + 1, 0)
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    steps = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    starts: Seconds = np.repeat(first, counts) + steps * grid
    if split:
        starts.sort(kind="stable")
    return starts


def _starts_within(candidates: Seconds, lows: Seconds, highs: Seconds) -> Seconds:
    """The candidates inside [lows[i], highs[i]] for some i (ranges sorted and disjoint)."""
    if lows.shape[0] == 0 or candidates.shape[0] == 0:
        return np.empty(0, dtype=np.int64)
    index = np.searchsorted(lows, candidates, side="right") - 1
    valid = index >= 0
    valid[valid] &= candidates[valid] <= highs[index[valid]]
    return candidates[valid]


class AvailabilityEngine:
    """Free time and slots of one practice over a horizon; see the module docstring."""

    def __init__(
        self,
        *,
        time_zone: str,
        calendar: Calendar,
        horizon: tuple[int, int],
        working: Mapping[str, IntervalArray],
        blocked: Mapping[str, IntervalArray],
        predefined_slots: Mapping[str, IntervalArray] | None = None,
        policy: SlotPolicy | None = None,
        clock: Callable[[], float] = _time.time,
    ) -> None:
        self.time_zone = time_zone
        self.calendar = calendar
        self.horizon = horizon
        self.policy = policy or SlotPolicy()
        self._clock = clock
        self._days = days_for(horizon[0], horizon[1], time_zone)
        self._order = [c.id for c in calendar.columns]
        self._position = {c: i for i, c in enumerate(self._order)}
        self._types = {t.id: t for t in calendar.appointment_types}
        self._holds: dict[str, tuple[str, int, int, int]] = {}
        self._version = 0  # bumped by every change: a search paused in between starts over
        self._columns: dict[str, _Column] = {}
        lo, hi = horizon
        for column_id in self._order:
            work = normalize(working.get(column_id, EMPTY)).window(lo, hi)
            raw = blocked.get(column_id, EMPTY).sorted()
            column = _Column(
                working=work,
                blocked_starts=raw.starts.copy(),
                blocked_ends=raw.ends.copy(),
                longest_block=int((raw.ends - raw.starts).max()) if len(raw) else 0,
                free=subtract(work, normalize(raw)),
            )
            if predefined_slots is not None:
                slots = predefined_slots.get(column_id, EMPTY).sorted().overlapping(lo, hi)
                column.predefined_starts = np.unique(slots.starts)
                column.predefined_union = normalize(slots)
                column.free = intersect(column.free, column.predefined_union)
            self._columns[column_id] = column
        self._areas = self._expand_areas(calendar.booking_areas)
        self._foreign_areas: dict[tuple[str, str], IntervalArray] = {}

    # --- building blocks ----------------------------------------------------------------------

    def _expand_areas(self, areas: Sequence[BookingArea]) -> list[tuple[BookingArea, IntervalArray]]:
        expanded = []
        for area in areas:
            include = np.ones(len(self._days), dtype=bool)
            if area.valid_from is not None:
                include[: max(self._days.index(area.valid_from), 0)] = False
            if area.valid_until is not None:
                include[max(self._days.index(area.valid_until) + 1, 0) :] = False
            expanded.append((area, self._days.expand(area.weekly_spans, include)))
        return expanded

    def _foreign(self, column_id: str, type_id: str) -> IntervalArray:
        """Booking-area time in this column where the type may not be booked."""
        key = (column_id, type_id)
        cached = self._foreign_areas.get(key)
        if cached is None:
            parts = [
                spans
                for area, spans in self._areas
                if (area.column_id is None or area.column_id == column_id) and type_id not in area.appointment_type_ids
            ]
            cached = union(*parts) if parts else EMPTY
            self._foreign_areas[key] = cached
        return cached

    def _bookable(self, column_id: str, type_id: str) -> IntervalArray:
        column = self._columns[column_id]
        cached = column.bookable.get(type_id)
        if cached is None:
            cached = subtract(column.free, self._foreign(column_id, type_id))
            column.bookable[type_id] = cached
        return cached

    def _valid_holds(self, column_id: str, now: int) -> IntervalArray:
        held = [(s, e) for c, s, e, expire in self._holds.values() if c == column_id and expire > now]
        return normalize(IntervalArray.of(held)) if held else EMPTY

    def _check_window(self, lo: int, hi: int) -> None:
        if lo < self.horizon[0] or hi > self.horizon[1]:
            raise OutsideHorizon(f"[{lo}, {hi}) is outside the engine's horizon {self.horizon}")

    def covers(self, lo: int, hi: int) -> bool:
        return self.horizon[0] <= lo and hi <= self.horizon[1]

    def _columns_for(self, column_ids: Sequence[str], field: str = "columns") -> list[str]:
        if not column_ids:
            return list(self._order)
        for index, column_id in enumerate(column_ids):
            if column_id not in self._columns:
                raise InvalidArgument.field(f"{field}[{index}]", "is not a column of this practice")
        return list(column_ids)

    # --- queries ------------------------------------------------------------------------------

    def free_time(self, lo: int, hi: int, column_ids: Sequence[str] = ()) -> list[ColumnIntervals]:
        """Free intervals per column inside [lo, hi): working minus blocked minus valid holds."""
        self._check_window(lo, hi)
        now = int(self._clock())
        result = []
        for column_id in self._columns_for(column_ids):
            free = self._columns[column_id].free.window(lo, hi)
            holds = self._valid_holds(column_id, now) if self._holds else EMPTY
            result.append(ColumnIntervals(column_id, subtract(free, holds) if len(holds) else free))
        return result

    def working_time(self, lo: int, hi: int, column_ids: Sequence[str] = ()) -> list[ColumnIntervals]:
        """Working time per column inside [lo, hi), as the engine was built with it."""
        self._check_window(lo, hi)
        return [ColumnIntervals(c, self._columns[c].working.window(lo, hi)) for c in self._columns_for(column_ids)]

    def appointment_type(self, type_id: str, field: str = "appointment_type") -> AppointmentType:
        found = self._types.get(type_id)
        if found is None:
            raise InvalidArgument.field(field, "is not an appointment type of this practice")
        return found

    def slots(
        self,
        type_id: str,
        lo: int,
        hi: int,
        column_ids: Sequence[str] = (),
        *,
        limit: int | None = None,
        after: tuple[int, int] | None = None,
        taken: Mapping[str, IntervalArray] | None = None,
    ) -> SlotArray:
        """Bookable starts in [lo, hi) for a type, in start order (ties by column order).

        `column_ids` empty means every column the type allows ("next available practitioner").
        `after` = (start, column position) continues a previous page; `limit` stops early.
        `taken`: more busy time per column for this query only (the gateway's claims: holds and
        bookings in flight), blocking exactly as busy time does, buffer included.
        """
        return _finish(self._slot_pass(type_id, lo, hi, column_ids, limit, after, taken))

    def slot_steps(
        self,
        type_id: str,
        lo: int,
        hi: int,
        column_ids: Sequence[str] = (),
        *,
        limit: int | None = None,
        after: tuple[int, int] | None = None,
        taken: Mapping[str, IntervalArray] | None = None,
    ) -> Generator[None, None, SlotArray]:
        """`slots` one column at a time: the generator pauses after each column, and returns what
        `slots` would. A page over every column of a practice takes milliseconds; a caller on an
        event loop runs a few steps at a time and lets other work in between.

        The answer is that of one state of the engine: a change between two steps (a booking,
        a hold) starts the search over, and after a few such restarts the last pass runs without
        pausing, so a busy practice still gets its answer."""
        for _ in range(_RESTARTS):
            version = self._version
            steps = self._slot_pass(type_id, lo, hi, column_ids, limit, after, taken)
            try:
                while True:
                    next(steps)
                    yield
                    if self._version != version:
                        break
            except StopIteration as done:
                return cast(SlotArray, done.value)
        return _finish(self._slot_pass(type_id, lo, hi, column_ids, limit, after, taken))

    def _slot_pass(
        self,
        type_id: str,
        lo: int,
        hi: int,
        column_ids: Sequence[str],
        limit: int | None,
        after: tuple[int, int] | None,
        taken: Mapping[str, IntervalArray] | None,
    ) -> Generator[None, None, SlotArray]:
        self._check_window(lo, hi)
        kind = self.appointment_type(type_id)
        if column_ids:
            for index, column_id in enumerate(column_ids):
                if column_id not in self._columns:
                    raise InvalidArgument.field(f"columns[{index}]", "is not a column of this practice")
                if column_id not in kind.column_ids:
                    raise InvalidArgument.field(f"columns[{index}]", "does not offer this appointment type")
            chosen = list(column_ids)
        else:
            chosen = [c for c in self._order if c in kind.column_ids]
        now = int(self._clock())
        duration = int(kind.duration.total_seconds())
        need = duration + int(kind.buffer.total_seconds())
        first_start = max(lo, now + int(kind.min_lead.total_seconds()))
        end_start = hi if kind.max_horizon is None else min(hi, now + int(kind.max_horizon.total_seconds()) + 1)
        if after is not None:
            first_start = max(first_start, after[0])
        positions: list[npt.NDArray[np.int32]] = []
        starts: list[Seconds] = []
        # With a limit, the limit-th earliest start found so far: a later column whose first possible
        # start is not earlier cannot contribute (equal starts go to the earlier column).
        cutoff: int | None = None
        found = 0
        if first_start < end_start:
            for column_id in chosen:
                if cutoff is not None and self._earliest_possible(column_id, type_id, first_start, need) >= cutoff:
                    continue
                per_column = None if limit is None else limit + 1  # `after` drops at most one per column
                # Starts after the cutoff cannot make the page: at least `limit` are not later.
                column_end = end_start if cutoff is None else min(end_start, cutoff + 1)
                extra = None if taken is None else taken.get(column_id)
                column_starts = self._column_slots(
                    column_id, type_id, first_start, column_end, need, now, per_column, extra
                )
                if after is not None and column_starts.shape[0]:
                    position = self._position[column_id]
                    keep = (column_starts > after[0]) | ((column_starts == after[0]) & (position > after[1]))
                    column_starts = column_starts[keep]
                starts.append(column_starts)
                positions.append(np.full(column_starts.shape[0], self._position[column_id], dtype=np.int32))
                found += int(column_starts.shape[0])
                if limit is not None and found >= limit:
                    cutoff = int(np.partition(np.concatenate(starts), limit - 1)[limit - 1])
                yield
        if not starts:
            return SlotArray(tuple(self._order), np.empty(0, dtype=np.int32), np.empty(0, dtype=np.int64), duration)
        # One int64 key per slot, (start - lo) shifted left with the column position in the low bits,
        # sorts into (start, column) order in one pass; each column's run is already sorted, which
        # the stable sort (timsort) exploits.
        bits = max(1, (len(self._order) - 1).bit_length())
        keys = np.concatenate([((s - lo) << bits) | p.astype(np.int64) for s, p in zip(starts, positions, strict=True)])
        keys.sort(kind="stable")
        if limit is not None:
            keys = keys[:limit]
        return SlotArray(tuple(self._order), (keys & ((1 << bits) - 1)).astype(np.int32), (keys >> bits) + lo, duration)

    def _earliest_possible(self, column_id: str, type_id: str, first: int, need: int) -> int:
        """A lower bound for the column's first slot start at or after `first`."""
        bookable = self._bookable(column_id, type_id)
        begin = int(np.searchsorted(bookable.ends, first + need, side="left"))
        if begin >= len(bookable):
            return np.iinfo(np.int64).max
        return max(int(bookable.starts[begin]), first)

    def _column_slots(
        self,
        column_id: str,
        type_id: str,
        first: int,
        end: int,
        need: int,
        now: int,
        limit: int | None,
        taken: IntervalArray | None = None,
    ) -> Seconds:
        """Slot starts of one column in [first, end), the first `limit` of them if given."""
        bookable = self._bookable(column_id, type_id)
        holds = self._valid_holds(column_id, now) if self._holds else EMPTY
        if taken is not None and len(taken):
            holds = union(holds, normalize(taken)) if len(holds) else normalize(taken)
        column = self._columns[column_id]
        # Bookable pieces in which a slot starting in [first, end) could fit.
        begin = int(np.searchsorted(bookable.ends, first + need, side="left"))
        stop = int(np.searchsorted(bookable.starts, end, side="left"))
        chunk = stop - begin if limit is None else max(limit, 16)
        found: list[Seconds] = []
        count = 0
        while begin < stop:
            upto = min(begin + chunk, stop)
            pieces = IntervalArray(bookable.starts[begin:upto], bookable.ends[begin:upto])
            if len(holds):
                pieces = subtract(pieces, holds)
            lows = np.maximum(pieces.starts, first)
            highs = np.minimum(pieces.ends - need, end - 1)
            if column.predefined_starts is not None:
                piece_starts = _starts_within(column.predefined_starts, lows, highs)
            else:
                piece_starts = _grid_starts(lows, highs, self.policy.grid_minutes * _MINUTE, self._days)
            found.append(piece_starts)
            count += int(piece_starts.shape[0])
            if limit is not None and count >= limit:
                break
            begin = upto
        if not found:
            return np.empty(0, dtype=np.int64)
        return np.concatenate(found)

    # --- changes ------------------------------------------------------------------------------

    def add_busy(self, column_id: str, start: int, end: int) -> None:
        """Something now occupies [start, end) in the column (appointment, reservation, absence)."""
        column = self._column_for_change(column_id, start, end)
        at = int(np.searchsorted(column.blocked_starts, start, side="left"))
        self._version += 1
        column.blocked_starts = np.insert(column.blocked_starts, at, start)
        column.blocked_ends = np.insert(column.blocked_ends, at, end)
        column.longest_block = max(column.longest_block, end - start)
        column.free = _carve(column.free, start, end)
        column.bookable.clear()

    def remove_busy(self, column_id: str, start: int, end: int) -> None:
        """What occupied [start, end) is gone (cancelled, moved, deleted)."""
        column = self._column_for_change(column_id, start, end)
        lo = int(np.searchsorted(column.blocked_starts, start, side="left"))
        self._version += 1
        hi = int(np.searchsorted(column.blocked_starts, start, side="right"))
        matches = np.flatnonzero(column.blocked_ends[lo:hi] == end)
        if matches.shape[0] == 0:
            raise KeyError(f"no busy interval [{start}, {end}) in column {column_id!r}")
        at = lo + int(matches[0])
        column.blocked_starts = np.delete(column.blocked_starts, at)
        column.blocked_ends = np.delete(column.blocked_ends, at)
        # Recompute just [start, end): working time there minus what still blocks it.
        reach = int(np.searchsorted(column.blocked_starts, start - column.longest_block, side="left"))
        until = int(np.searchsorted(column.blocked_starts, end, side="left"))
        still = IntervalArray(column.blocked_starts[reach:until], column.blocked_ends[reach:until]).clipped(start, end)
        pieces = subtract(column.working.window(start, end), normalize(still))
        if column.predefined_union is not None:
            pieces = intersect(pieces, column.predefined_union.window(start, end))
        column.free = _splice(column.free, start, end, pieces)
        column.bookable.clear()

    def add_hold(self, hold_id: str, column_id: str, start: int, end: int, expire: int) -> None:
        """A provisional hold blocks like busy time until `expire`; expired holds block nothing."""
        self._column_for_change(column_id, start, end)
        self._holds[hold_id] = (column_id, start, end, expire)
        self._version += 1

    def remove_hold(self, hold_id: str) -> None:
        self._holds.pop(hold_id, None)
        self._version += 1

    def _column_for_change(self, column_id: str, start: int, end: int) -> _Column:
        column = self._columns.get(column_id)
        if column is None:
            raise KeyError(f"unknown column {column_id!r}")
        if end <= start:
            raise ValueError(f"empty interval [{start}, {end})")
        return column

    def blocked(self, column_id: str) -> IntervalArray:
        column = self._columns[column_id]
        return IntervalArray(column.blocked_starts.copy(), column.blocked_ends.copy())
