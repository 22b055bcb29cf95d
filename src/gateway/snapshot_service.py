"""SnapshotService over gRPC, and the conversions its HTTP + JSON twin (http_api.py) shares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
from google.protobuf import duration_pb2

from gateway.snapshots import SnapshotKeeper, SnapshotUpload, check_busy_time_count, check_free_slot_count
from otv.v1 import snapshot_service_pb2, snapshot_service_pb2_grpc, time_pb2
from otv_sdk import conversion as cv
from otv_sdk.errors import FailedPrecondition, NotFound
from otv_sdk.limits import EARLIEST_SECONDS, LATEST_SECONDS
from otv_sdk.loop_share import LoopShare
from otv_sdk.ports import CallContext
from otv_sdk.resources import format_name, parse_practice_child
from otv_sdk.servicers import AdapterResolver, Identify, ServicerBase, validate_request_id
from otv_sdk.timeline import EMPTY, IntervalArray

__all__ = ["SnapshotCalls", "add_snapshot_servicer"]

# The calendar range, as cv.timestamp_to_datetime checks it (limits.py).
_MIN_SECONDS, _MAX_SECONDS = EARLIEST_SECONDS, LATEST_SECONDS


class SnapshotCalls:
    """The two calls on protobuf messages, whatever carried them (gRPC or HTTP + JSON)."""

    def __init__(self, keepers: Mapping[str, SnapshotKeeper], known_practices: frozenset[str]) -> None:
        self._keepers = dict(keepers)
        self._known = known_practices

    def _keeper(self, parent: str) -> SnapshotKeeper:
        practice_id = cv.practice_from_parent(parent)
        keeper = self._keepers.get(practice_id)
        if keeper is None:
            if practice_id in self._known:
                raise FailedPrecondition("this practice is not configured for snapshot uploads")
            raise NotFound.field("parent", "no practice with this id is connected to this gateway")
        return keeper

    async def get_upload_window(
        self, ctx: CallContext, request: snapshot_service_pb2.GetUploadWindowRequest
    ) -> snapshot_service_pb2.GetUploadWindowResponse:
        keeper = self._keeper(request.parent)
        practice = keeper.practice
        return snapshot_service_pb2.GetUploadWindowResponse(
            window=cv.interval_to_proto(practice.upload_window(keeper.now())),
            upload_interval=duration_pb2.Duration(seconds=int(practice.upload_interval.total_seconds())),
            columns=[format_name(practice.practice_id, "columns", c) for c in practice.column_ids()],
            slot_list=practice.slot_list,
        )

    async def upload_snapshot(
        self, ctx: CallContext, request: snapshot_service_pb2.UploadSnapshotRequest
    ) -> snapshot_service_pb2.UploadSnapshotResponse:
        keeper = self._keeper(request.parent)
        practice_id = keeper.practice.practice_id
        request_id = validate_request_id(request.request_id)
        window = cv.window_from_proto(request)
        check_busy_time_count(sum(len(column.busy_times) for column in request.columns))
        for index, column in enumerate(request.columns):  # refused before any slot is read
            keeper.check_slot_list(index, len(column.free_slots))
        check_free_slot_count(sum(len(column.free_slots) for column in request.columns))
        columns = []
        free_slots = []
        share = LoopShare()  # 24 months of a practice take ~10 ms to read: other calls get turns
        for index, column in enumerate(request.columns):
            await share.pause_if_due()
            column_id = parse_practice_child(column.column, f"columns[{index}].column", "columns", practice_id)
            busy_rows, slot_rows = _wire_rows(column)
            field = f"columns[{index}]"
            columns.append((column_id, _intervals(column.busy_times, f"{field}.busy_times", busy_rows)))
            free_slots.append(_intervals(column.free_slots, f"{field}.free_slots", slot_rows, inward=True))
        outcome = await keeper.upload(SnapshotUpload(request_id, window, tuple(columns), tuple(free_slots)))
        return snapshot_service_pb2.UploadSnapshotResponse(
            added_count=outcome.added,
            removed_count=outcome.removed,
            backfilled_columns=[format_name(practice_id, "columns", c) for c in outcome.backfilled],
            change_cursor=outcome.cursor,
            next_upload_time=cv.datetime_to_timestamp(outcome.next_upload),
        )


# One TimeInterval as protobuf encodes it in the common case: both timestamps set, whole seconds
# that take five varint bytes (1978 to 3058), no nanos. 18 bytes per item with its tag and length.
_ITEM = 18
_FIXED_AT = np.array([1, 2, 3, 4, 10, 11, 12])
_FIXED = np.array([16, 0x0A, 6, 0x08, 0x12, 6, 0x08], dtype=np.uint8)
_VARINT = np.array([1 << (7 * k) for k in range(5)], dtype=np.int64)


def _wire_block(raw: npt.NDArray[np.uint8], at: int, count: int, tag: int) -> npt.NDArray[np.int64] | None:
    """`count` items of the common encoding from `at` as (1, seconds, 0, 1, seconds, 0) rows, or
    None when any item is encoded otherwise (the caller then reads the messages one by one)."""
    if count == 0:
        return np.empty((0, 6), dtype=np.int64)
    if at + count * _ITEM > raw.shape[0]:
        return None
    block = raw[at : at + count * _ITEM].reshape(count, _ITEM)
    if not (block[:, 0] == tag).all() or not (block[:, _FIXED_AT] == _FIXED).all():
        return None
    rows = np.zeros((count, 6), dtype=np.int64)
    rows[:, 0] = rows[:, 3] = 1
    for column, first in ((1, 5), (4, 13)):
        varint = block[:, first : first + 5]
        if not ((varint[:, :4] >= 0x80).all() and (varint[:, 4] < 0x80).all()):
            return None
        rows[:, column] = (varint & 0x7F).astype(np.int64) @ _VARINT
    return rows


def _wire_rows(
    column: snapshot_service_pb2.ColumnSnapshot,
) -> tuple[npt.NDArray[np.int64] | None, npt.NDArray[np.int64] | None]:
    """The busy times' and free slots' rows read from the column's encoding at once (reading
    50,000 messages one by one costs over 100 ms; serialising the column and decoding it as an
    array, a few). Either is None when not every item has the common encoding."""
    raw = np.frombuffer(column.SerializeToString(), dtype=np.uint8)
    at = 0
    if column.column:  # field 1 first: tag, length (varint), the name
        at, length, shift = 1, 0, 0
        while at < raw.shape[0]:
            byte = int(raw[at])
            length |= (byte & 0x7F) << shift
            at += 1
            shift += 7
            if not byte & 0x80:
                break
        at += length
    busy = _wire_block(raw, at, len(column.busy_times), 0x12)
    slots = _wire_block(raw, at + len(column.busy_times) * _ITEM, len(column.free_slots), 0x1A)
    if busy is None or slots is None or at + (len(column.busy_times) + len(column.free_slots)) * _ITEM != raw.shape[0]:
        return (busy, None) if busy is not None and slots is None else (None, None)
    return busy, slots


def _intervals(
    items: Sequence[time_pb2.TimeInterval],
    field: str,
    wire: npt.NDArray[np.int64] | None = None,
    *,
    inward: bool = False,
) -> IntervalArray:
    """All of a column's busy times (or free slots) as whole-second arrays, in the order sent; the
    first malformed one is named as the per-item parse (cv.interval_from_proto) would name it.

    One pass over the messages (reading 30,000 protobuf messages is most of an upload's cost), the
    checks vectorised. Sub-second instants of busy times round outward, the start down and the end
    up: the domain counts whole seconds, and a busy time may grow by a fraction of a second but
    never shrink (a shrunk one could even become empty, which no partner could parse from the
    feed). Free slots (`inward`) round the other way, so free time never grows: a slot that
    becomes empty is refused by the keeper's checks.
    """
    if not items:
        return EMPTY
    rows = (
        wire
        if wire is not None
        else np.array(
            [
                (
                    busy.HasField("start_time"),
                    busy.start_time.seconds,
                    busy.start_time.nanos,
                    busy.HasField("end_time"),
                    busy.end_time.seconds,
                    busy.end_time.nanos,
                )
                for busy in items
            ],
            dtype=np.int64,
        ).reshape(-1, 6)
    )
    has_start, start_s, start_ns, has_end, end_s, end_ns = rows.T
    bad_start = (has_start == 0) | (start_s < _MIN_SECONDS) | (start_s > _MAX_SECONDS) | (start_ns < 0)
    bad_start |= start_ns >= 10**9
    bad_end = (has_end == 0) | (end_s < _MIN_SECONDS) | (end_s > _MAX_SECONDS) | (end_ns < 0) | (end_ns >= 10**9)
    # Compared as datetimes are, to the microsecond, so this and the per-item parse agree.
    not_after = (end_s < start_s) | ((end_s == start_s) & (end_ns // 1000 <= start_ns // 1000))
    wrong = np.flatnonzero(bad_start | bad_end | not_after)
    if wrong.size:
        first = int(wrong[0])
        cv.interval_from_proto(items[first], f"{field}[{first}]")  # raises, naming the part
        raise AssertionError(f"{field}[{first}] was found malformed but parses")  # the two checks disagree
    if inward:
        return IntervalArray(np.ascontiguousarray(start_s + (start_ns > 0)), np.ascontiguousarray(end_s))
    return IntervalArray(np.ascontiguousarray(start_s), np.ascontiguousarray(end_s + (end_ns > 0)))


class _SnapshotServicer(ServicerBase, snapshot_service_pb2_grpc.SnapshotServiceServicer):
    def __init__(self, resolver: AdapterResolver, identify: Identify, calls: SnapshotCalls) -> None:
        super().__init__(resolver, identify)
        self._calls = calls

    async def GetUploadWindow(
        self, request: snapshot_service_pb2.GetUploadWindowRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> snapshot_service_pb2.GetUploadWindowResponse:
        return await self._run(context, "GetUploadWindow", lambda ctx: self._calls.get_upload_window(ctx, request))

    async def UploadSnapshot(
        self, request: snapshot_service_pb2.UploadSnapshotRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> snapshot_service_pb2.UploadSnapshotResponse:
        return await self._run(context, "UploadSnapshot", lambda ctx: self._calls.upload_snapshot(ctx, request))


def add_snapshot_servicer(
    server: grpc.aio.Server, resolver: AdapterResolver, identify: Identify, calls: SnapshotCalls
) -> str:
    snapshot_service_pb2_grpc.add_SnapshotServiceServicer_to_server(
        _SnapshotServicer(resolver, identify, calls), server
    )
    return snapshot_service_pb2.DESCRIPTOR.services_by_name["SnapshotService"].full_name
