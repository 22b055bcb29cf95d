"""SnapshotService over gRPC, and the conversions its HTTP + JSON twin (http_api.py) shares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
import numpy as np
from google.protobuf import duration_pb2

from gateway.snapshots import SnapshotKeeper, SnapshotUpload
from otv.v1 import snapshot_service_pb2, snapshot_service_pb2_grpc
from otv_sdk import conversion as cv
from otv_sdk.errors import FailedPrecondition, NotFound
from otv_sdk.ports import CallContext
from otv_sdk.resources import format_name, parse_practice_child
from otv_sdk.servicers import AdapterResolver, Identify, ServicerBase, validate_request_id
from otv_sdk.timeline import IntervalArray

__all__ = ["SnapshotCalls", "add_snapshot_servicer"]

_MAX_SECONDS = 253402300799  # 9999-12-31T23:59:59Z, the end of Timestamp's range


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
    """All of a column's busy times as arrays; a bad one is named by the per-item parse."""
    items = column.busy_times
    starts = np.fromiter((busy.start_time.seconds for busy in items), np.int64, len(items))
    ends = np.fromiter((busy.end_time.seconds for busy in items), np.int64, len(items))
    sound = (
        all(busy.HasField("start_time") and busy.HasField("end_time") for busy in items)
        and all(0 <= busy.start_time.nanos < 10**9 and 0 <= busy.end_time.nanos < 10**9 for busy in items)
        and bool(np.all((ends > starts) & (starts >= 0) & (ends <= _MAX_SECONDS)))
    )
    if sound:
        return IntervalArray(starts, ends)
    for j, busy in enumerate(items):  # find and name the first bad one
        cv.interval_from_proto(busy, f"{field}[{j}]")
    return IntervalArray.of([(int(s), int(e)) for s, e in zip(starts, ends, strict=True)])


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
