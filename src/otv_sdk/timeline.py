"""Many intervals at once: int64 UTC epoch seconds in numpy arrays, and set operations on them.

A practice has tens of thousands of intervals over 24 months; one Python object per interval costs
microseconds each, an array costs nanoseconds. `IntervalArray` holds parallel `starts`/`ends`
arrays. "Normalised" means sorted, non-empty, disjoint and not touching (touching intervals are
merged); free time and working time are normalised, busy time may overlap and is not.

Every operation is vectorised: cost grows with the number of intervals involved, never with the
length of time they cover.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # models builds on this module, not the other way round
    from otv_sdk.models import Interval

__all__ = [
    "EMPTY",
    "IntervalArray",
    "Seconds",
    "concatenate",
    "from_datetime",
    "intersect",
    "normalize",
    "subtract",
    "to_datetime",
    "union",
]

Seconds = npt.NDArray[np.int64]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_datetime(value: datetime) -> int:
    delta = value - _EPOCH
    return delta.days * 86400 + delta.seconds


def to_datetime(seconds: int) -> datetime:
    return _EPOCH + timedelta(seconds=int(seconds))


@dataclass(frozen=True, slots=True, eq=False)
class IntervalArray:
    """Intervals [starts[i], ends[i]) in UTC epoch seconds."""

    starts: Seconds
    ends: Seconds

    @classmethod
    def of(cls, pairs: Sequence[tuple[int, int]] = ()) -> IntervalArray:
        if not pairs:
            return EMPTY
        data = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        return cls(np.ascontiguousarray(data[:, 0]), np.ascontiguousarray(data[:, 1]))

    @classmethod
    def from_intervals(cls, intervals: Sequence[Interval]) -> IntervalArray:
        return cls.of([(from_datetime(i.start), from_datetime(i.end)) for i in intervals])

    def intervals(self) -> Iterator[Interval]:
        """As `Interval` objects (slow; for tests, display and small results)."""
        from otv_sdk.models import Interval

        for start, end in zip(self.starts.tolist(), self.ends.tolist(), strict=True):
            yield Interval(to_datetime(start), to_datetime(end))

    def pairs(self) -> list[tuple[int, int]]:
        return list(zip(self.starts.tolist(), self.ends.tolist(), strict=True))

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IntervalArray):
            return NotImplemented
        return np.array_equal(self.starts, other.starts) and np.array_equal(self.ends, other.ends)

    def __repr__(self) -> str:
        shown = ", ".join(f"[{s}, {e})" for s, e in self.pairs()[:4])
        more = f", ... {len(self)} in all" if len(self) > 4 else ""
        return f"IntervalArray({shown}{more})"

    def total(self) -> int:
        """Seconds covered, counting overlaps twice (exact for normalised arrays)."""
        return int((self.ends - self.starts).sum())

    def window(self, lo: int, hi: int) -> IntervalArray:
        """The parts of a normalised array inside [lo, hi); O(log n) plus the copy."""
        first = int(np.searchsorted(self.ends, lo, side="right"))
        last = int(np.searchsorted(self.starts, hi, side="left"))
        if first >= last:
            return EMPTY
        starts = self.starts[first:last].copy()
        ends = self.ends[first:last].copy()
        if starts[0] < lo:
            starts[0] = lo
        if ends[-1] > hi:
            ends[-1] = hi
        return IntervalArray(starts, ends)

    def clipped(self, lo: int, hi: int) -> IntervalArray:
        """Any array (maybe overlapping) cut to [lo, hi), dropping what lies outside."""
        inside = self.overlapping(lo, hi)
        if len(inside) == 0:
            return EMPTY
        return IntervalArray(np.maximum(inside.starts, lo), np.minimum(inside.ends, hi))

    def sorted(self) -> IntervalArray:
        """Sorted by start, then end (a no-op copy-free return when already sorted)."""
        if len(self) < 2:
            return self
        step_start = self.starts[1:] - self.starts[:-1]
        step_end = self.ends[1:] - self.ends[:-1]
        if bool(np.all((step_start > 0) | ((step_start == 0) & (step_end >= 0)))):
            return self
        order = np.lexsort((self.ends, self.starts))
        return IntervalArray(self.starts[order], self.ends[order])

    def overlapping(self, lo: int, hi: int) -> IntervalArray:
        """Intervals of a sorted (maybe overlapping) array that overlap [lo, hi), unclipped."""
        if len(self) == 0:
            return EMPTY
        mask = (self.starts < hi) & (self.ends > lo)
        return IntervalArray(self.starts[mask], self.ends[mask])


EMPTY = IntervalArray(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))


def normalize(items: IntervalArray) -> IntervalArray:
    """Sort, drop empty intervals and merge overlapping or touching ones."""
    keep = items.ends > items.starts
    starts, ends = items.starts[keep], items.ends[keep]
    if starts.shape[0] == 0:
        return EMPTY
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)
    # A new group begins where an interval starts after everything before it has ended.
    begins = np.empty(starts.shape[0], dtype=bool)
    begins[0] = True
    begins[1:] = starts[1:] > reach[:-1]
    group_starts = starts[begins]
    last_of_group = np.append(np.flatnonzero(begins)[1:] - 1, starts.shape[0] - 1)
    return IntervalArray(group_starts, reach[last_of_group])


def concatenate(*parts: IntervalArray) -> IntervalArray:
    """All intervals of the parts, sorted, overlaps kept (for busy time)."""
    if not parts:
        return EMPTY
    return IntervalArray(np.concatenate([p.starts for p in parts]), np.concatenate([p.ends for p in parts])).sorted()


def union(*parts: IntervalArray) -> IntervalArray:
    if not parts:
        return EMPTY
    return normalize(IntervalArray(np.concatenate([p.starts for p in parts]), np.concatenate([p.ends for p in parts])))


def intersect(a: IntervalArray, b: IntervalArray) -> IntervalArray:
    """Intersection of two normalised arrays."""
    if len(a) == 0 or len(b) == 0:
        return EMPTY
    # For each interval of a, the run of b intervals that overlap it.
    lo = np.searchsorted(b.ends, a.starts, side="right")
    hi = np.searchsorted(b.starts, a.ends, side="left")
    counts = np.maximum(hi - lo, 0)
    total = int(counts.sum())
    if total == 0:
        return EMPTY
    a_index = np.repeat(np.arange(len(a)), counts)
    # b indices: lo[i], lo[i]+1, ..., hi[i]-1 for every i, without a Python loop.
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    b_index = np.repeat(lo, counts) + offsets
    starts = np.maximum(a.starts[a_index], b.starts[b_index])
    ends = np.minimum(a.ends[a_index], b.ends[b_index])
    keep = ends > starts
    return IntervalArray(starts[keep], ends[keep])


_FAR = np.iinfo(np.int64).max // 4


def complement(a: IntervalArray) -> IntervalArray:
    """Everything not in a normalised array (bounded by a very distant past and future)."""
    starts = np.concatenate(([-_FAR], a.ends))
    ends = np.concatenate((a.starts, [_FAR]))
    keep = ends > starts
    return IntervalArray(starts[keep], ends[keep])


def subtract(a: IntervalArray, b: IntervalArray) -> IntervalArray:
    """a minus b, both normalised."""
    if len(a) == 0 or len(b) == 0:
        return a
    return intersect(a, complement(b))
