"""Turn two snapshots of a calendar's busy time into changes (added, removed; a move is both).

For a PVS that can only upload its busy times now and then (one seed PVS does it with curl every
60-120 s), or an adapter that can only poll its PVS: consecutive snapshots become change-feed
events. Intervals are compared as a multiset per column, so two identical double bookings and the
removal of one of them are told apart. Vectorised: 24 months x 20 columns is a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from otv_sdk.changes import BusyTimeChanged
from otv_sdk.timeline import EMPTY, IntervalArray

__all__ = ["diff_column", "diff_snapshots"]

_Keys = npt.NDArray[np.int64]
_SHIFT = np.int64(32)
_LOW = np.int64((1 << 32) - 1)


def _keys(items: IntervalArray) -> _Keys:
    """(start, length) packed into one int64; lengths under 2^32 s, starts within int32 seconds."""
    lengths = items.ends - items.starts
    if len(items) and (int(lengths.min()) < 0 or int(lengths.max()) > int(_LOW)):
        raise ValueError("an interval's length is out of range")
    return np.asarray((items.starts << _SHIFT) | lengths, dtype=np.int64)


def _intervals(keys: _Keys) -> IntervalArray:
    if keys.size == 0:
        return EMPTY
    starts = keys >> _SHIFT
    return IntervalArray(np.ascontiguousarray(starts), np.ascontiguousarray(starts + (keys & _LOW)))


def diff_column(previous: IntervalArray, current: IntervalArray) -> tuple[IntervalArray, IntervalArray]:
    """(added, removed), each sorted by start; as multisets, so duplicates count."""
    before, before_n = np.unique(_keys(previous), return_counts=True)
    after, after_n = np.unique(_keys(current), return_counts=True)
    every = np.union1d(before, after)
    delta = np.zeros(every.size, dtype=np.int64)
    delta[np.searchsorted(every, after)] += after_n
    delta[np.searchsorted(every, before)] -= before_n
    added = np.repeat(every[delta > 0], delta[delta > 0])
    removed = np.repeat(every[delta < 0], -delta[delta < 0])
    return _intervals(added), _intervals(removed)


def diff_snapshots(
    previous: Mapping[str, IntervalArray], current: Mapping[str, IntervalArray]
) -> list[BusyTimeChanged]:
    """One change per column that differs. A column absent from `current` was not uploaded: no change.
    A column seen for the first time is backfilled: everything in it is added."""
    changes: list[BusyTimeChanged] = []
    for column_id, now in current.items():
        added, removed = diff_column(previous.get(column_id, EMPTY), now)
        if len(added) or len(removed):
            changes.append(BusyTimeChanged(column_id, tuple(added.intervals()), tuple(removed.intervals())))
    return changes
