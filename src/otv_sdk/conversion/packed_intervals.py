"""A column's busy time as one PackedIntervals message: uint32 seconds, delta-coded from an origin.

numpy arrays in and out, not one object per interval: 24 months of a practice's busy time are
about 30,000 numbers (see PackedIntervals in time.proto). Packing raises a plain ValueError for
what uint32 cannot hold, since it packs the server's own data, not a request; unpacking reads a
sender's message and raises InvalidArgument naming the field.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np

from otv.v1 import time_pb2
from otv_sdk.conversion.instants import _set_timestamp, timestamp_to_datetime
from otv_sdk.errors import InvalidArgument
from otv_sdk.models import ColumnIntervals
from otv_sdk.resources import format_name, parse_practice_child
from otv_sdk.timeline import IntervalArray, from_datetime

__all__ = ["pack_intervals", "unpack_intervals"]


# Packed arrays are uint32 seconds.
_UINT32_MAX = 2**32 - 1


def pack_intervals(
    practice_id: str, origin: datetime, column: ColumnIntervals, into: time_pb2.PackedIntervals | None = None
) -> time_pb2.PackedIntervals:
    """Encode intervals as delta-coded seconds (see PackedIntervals in time.proto).

    `into`: a message to fill in place, for example one just added to a response's repeated field.
    A message passed to a response's constructor is copied whole; 24 months of a practice's busy
    time are about 30,000 numbers, and the copy took longer than the packing."""
    items = column.intervals.sorted()
    origin_seconds = from_datetime(origin)
    durations = items.ends - items.starts
    deltas = np.diff(items.starts, prepend=np.int64(origin_seconds))
    if len(items) and (
        int(deltas.min()) < 0
        or int(deltas.max()) > _UINT32_MAX
        or int(durations.min()) <= 0
        or int(durations.max()) > _UINT32_MAX
    ):
        raise ValueError(f"column {column.column_id!r} has intervals that cannot be packed from {origin.isoformat()}")
    message = time_pb2.PackedIntervals() if into is None else into
    message.column = format_name(practice_id, "columns", column.column_id)
    _set_timestamp(message.origin, origin)
    message.start_deltas.extend(deltas.tolist())
    message.durations.extend(durations.tolist())
    return message


def unpack_intervals(msg: time_pb2.PackedIntervals, practice_id: str, field: str) -> ColumnIntervals:
    column_id = parse_practice_child(msg.column, f"{field}.column", "columns", practice_id)
    if len(msg.start_deltas) != len(msg.durations):
        raise InvalidArgument.field(field, "start_deltas and durations differ in length")
    origin = from_datetime(timestamp_to_datetime(msg.origin, f"{field}.origin"))
    deltas = np.array(msg.start_deltas, dtype=np.int64)
    durations = np.array(msg.durations, dtype=np.int64)
    if durations.shape[0] and int(durations.min()) == 0:
        raise InvalidArgument.field(f"{field}.durations[{int(np.argmin(durations))}]", "must be positive")
    starts = origin + np.cumsum(deltas)
    return ColumnIntervals(column_id, IntervalArray(starts, starts + durations))
