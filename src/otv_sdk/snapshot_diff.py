"""Turn two snapshots of a calendar's busy time into changes (added, removed; a move is both).

For a PVS that can only upload its busy times now and then (one seed PVS does it with curl every
60-120 s), or an adapter that can only poll its PVS: consecutive snapshots become change-feed
events. Intervals are compared as a multiset per column, so two identical double bookings and the
removal of one of them are told apart. Vectorised: 24 months x 20 columns is a few milliseconds.

Intervals are compared as (start, end) pairs of int64 seconds, sorted with `np.lexsort`, never
packed into one int64: an earlier version packed (start << 32 | length), which silently wrapped
every start after 2038-01-19 (and before 1901-12-13) into another century. Any int64 start and end
diff correctly, so the diff puts no limit of its own on the instants a domain accepts.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from otv_sdk.changes import BusyTimeChanged
from otv_sdk.timeline import EMPTY, IntervalArray, Seconds

__all__ = ["diff_column", "diff_snapshots"]


def diff_column(previous: IntervalArray, current: IntervalArray) -> tuple[IntervalArray, IntervalArray]:
    """(added, removed), each sorted by start, then end; as multisets, so duplicates count.

    Both snapshots go into one array, previous intervals weighing -1 and current ones +1; sorted by
    (start, end), equal intervals are neighbours, and each run's sum is how many more of that
    interval the current snapshot holds (negative: fewer). One sort of both, linear otherwise.
    """
    starts = np.concatenate((previous.starts, current.starts))
    ends = np.concatenate((previous.ends, current.ends))
    if starts.size == 0:
        return EMPTY, EMPTY
    weights = np.concatenate((np.full(len(previous), -1, np.int64), np.ones(len(current), np.int64)))
    order = np.lexsort((ends, starts))
    starts, ends, weights = starts[order], ends[order], weights[order]
    run_begins = np.empty(starts.size, dtype=bool)
    run_begins[0] = True
    run_begins[1:] = (starts[1:] != starts[:-1]) | (ends[1:] != ends[:-1])
    heads = np.flatnonzero(run_begins)
    delta = np.add.reduceat(weights, heads)
    starts, ends = starts[heads], ends[heads]
    more, fewer = delta > 0, delta < 0
    return _repeated(starts[more], ends[more], delta[more]), _repeated(starts[fewer], ends[fewer], -delta[fewer])


def _repeated(starts: Seconds, ends: Seconds, counts: npt.NDArray[np.int64]) -> IntervalArray:
    if starts.size == 0:
        return EMPTY
    return IntervalArray(np.repeat(starts, counts), np.repeat(ends, counts))


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
