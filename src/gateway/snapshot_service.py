"""SnapshotService over gRPC, and the conversions its HTTP + JSON twin (http_api.py) shares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
import numpy as np
from google.protobuf import duration_pb2

from gateway.snapshots import SnapshotKeeper, SnapshotUpload, check_busy_time_count
from otv.v1 import snapshot_service_pb2, snapshot_service_pb2_grpc
from otv_sdk import conversion as cv
from otv_sdk.errors import FailedPrecondition, NotFound
from otv_sdk.limits import EARLIEST_SECONDS, LATEST_SECONDS
from otv_sdk.ports import CallContext
from otv_sdk.resources import format_name, parse_practice_child
from otv_sdk.servicers import AdapterResolver, Identify, ServicerBase, validate_request_id
from otv_sdk.timeline import IntervalArray

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
        )

    async def upload_snapshot(
        self, ctx: CallContext, request: snapshot_service_pb2.UploadSnapshotRequest
    ) -> snapshot_service_pb2.UploadSnapshotResponse:
        keeper = self._keeper(request.parent)
        practice_id = keeper.practice.practice_id
        request_id = validate_request_id(request.request_id)
        window = cv.window_from_proto(request)
        check_busy_time_count(sum(len(column.busy_times) for column in request.columns))
        columns = []
        for index, column in enumerate(request.columns):
            column_id = parse_practice_child(column.column, f"columns[{index}].column", "columns", practice_id)
            columns.append((column_id, _busy_times(column, f"columns[{index}].busy_times")))
        outcome = await keeper.upload(SnapshotUpload(request_id, window, tuple(columns)))
        return snapshot_service_pb2.UploadSnapshotResponse(
            added_count=outcome.added,
            removed_count=outcome.removed,
            backfilled_columns=[format_name(practice_id, "columns", c) for c in outcome.backfilled],
            change_cursor=outcome.cursor,
            next_upload_time=cv.datetime_to_timestamp(outcome.next_upload),
        )


def _busy_times(column: snapshot_service_pb2.ColumnSnapshot, field: str) -> IntervalArray:
    """All of a column's busy times as whole-second arrays, in the order sent; the first malformed
    one is named as the per-item parse (cv.interval_from_proto) would name it.

    One pass over the messages (reading 30,000 protobuf messages is most of an upload's cost), the
    checks vectorised. Sub-second instants round outward, the start down and the end up: the
    domain counts whole seconds, and a busy time may grow by a fraction of a second but never
    shrink (a shrunk one could even become empty, which no partner could parse from the feed).
    """
    items = column.busy_times
    rows = np.array(
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
