"""Snapshot upload end to end: 20 columns x 1,500 busy times (about 24 months), signed gRPC, SQLite store.

    python benchmarks/bench_snapshot_upload.py [--runs 10] [--json PATH]

Measures the first upload (backfill of 30,000 busy times) and then uploads with 100 changes each:
parse, validate, diff against the stored snapshot, store snapshot and change events in one
transaction, answer. No target in the issue; printed so regressions are visible.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import grpc
from bench_snapshot_diff import COLUMNS, snapshots
from signed_partner import NO_PARTNER_LIMITS

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.partners import PartnerRegistry
from otv.v1 import snapshot_service_pb2, snapshot_service_pb2_grpc, time_pb2
from otv_sdk.client import signing_interceptors
from otv_sdk.signing import Signer, generate_key_pair
from otv_sdk.timeline import IntervalArray

START = 1_800_000_000
WINDOW = 730 * 86400


def _interval(start: int, end: int) -> time_pb2.TimeInterval:
    message = time_pb2.TimeInterval()
    message.start_time.seconds = start
    message.end_time.seconds = end
    return message


def _request(
    columns: dict[str, IntervalArray], window: time_pb2.TimeInterval
) -> snapshot_service_pb2.UploadSnapshotRequest:
    return snapshot_service_pb2.UploadSnapshotRequest(
        parent="practices/bench",
        request_id=str(uuid.uuid4()),
        window=window,
        columns=[
            snapshot_service_pb2.ColumnSnapshot(
                column=f"practices/bench/columns/{column}",
                busy_times=[_interval(s, e) for s, e in busy.pairs()],
            )
            for column, busy in columns.items()
        ],
    )


async def run(runs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        practice = {
            "display_name": "Benchmark",
            "window_days": 730,
            "columns": [{"id": f"col-{c}", "display_name": f"Column {c}"} for c in range(COLUMNS)],
        }
        config = parse_config(
            {
                "gateway": {
                    "listen": "127.0.0.1:0",
                    "shutdown_grace_seconds": 0,
                    "secret_key": "5e" * 48,
                    "state_store": f"sqlite:///{folder}/state.sqlite",
                    "rate_limit": NO_PARTNER_LIMITS,
                },
                "practices": {"bench": {"adapter": {"snapshot": practice}}},
            }
        )
        gateway = await Gateway.start(config)
        private, public = generate_key_pair()
        registry = PartnerRegistry(gateway.router.store)
        registry.add_partner("pvs")
        registry.add_key("pvs", "pvs-1", public)
        registry.grant("pvs", "bench", ("snapshot",))
        channel = grpc.aio.insecure_channel(
            gateway.address,
            interceptors=signing_interceptors(Signer("pvs-1", private, "otv")),
            options=[("grpc.max_send_message_length", 8 << 20)],
        )
        stub = snapshot_service_pb2_grpc.SnapshotServiceStub(channel)
        gateway.router.snapshot_keepers["bench"].clock = lambda: START  # the window the busy times fill
        try:
            window = (
                await stub.GetUploadWindow(snapshot_service_pb2.GetUploadWindowRequest(parent="practices/bench"))
            ).window
            first, changed = snapshots(random.Random(7), window.start_time.seconds)
            request = _request(first, window)
            began = time.perf_counter()
            answer = await stub.UploadSnapshot(request)
            backfill = time.perf_counter() - began
            assert answer.added_count == sum(len(v) for v in first.values())
            await asyncio.sleep(1)  # let the feed take in the backfill's events before measuring
            timings = []
            for run in range(runs):  # back and forth: every upload differs from the stored one by 100 changes
                request = _request(changed if run % 2 == 0 else first, window)
                began = time.perf_counter()
                await stub.UploadSnapshot(request)
                timings.append(time.perf_counter() - began)
            return {
                "bytes": request.ByteSize(),
                "backfill_ms": backfill * 1000,
                "median_ms": statistics.median(timings) * 1000,
                "max_ms": max(timings) * 1000,
            }
        finally:
            await channel.close()
            await gateway.stop(0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(args.runs))
    print(
        f"snapshot upload, {COLUMNS} columns, 30,000 busy times ({result['bytes'] / 1e6:.1f} MB): "
        f"backfill {result['backfill_ms']:.0f} ms; 100 changes: median {result['median_ms']:.0f} ms, "
        f"max {result['max_ms']:.0f} ms over {args.runs} uploads"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
