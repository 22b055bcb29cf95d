"""Snapshot upload end to end: 20 columns x 1,500 busy times (about 24 months), signed gRPC, SQLite store.

    python benchmarks/bench_snapshot_upload.py [--runs 10] [--json PATH] [--slot-list]

Measures the first upload (backfill of 30,000 busy times) and then uploads with 100 changes each:
parse, validate, diff against the stored snapshot, store snapshot and change events in one
transaction, answer. No target in the issue; printed so regressions are visible.

`--slot-list` (issue 18, target: median at most 100 ms): a slot-list practice (DURIA) of 4 columns
over 24 months (730 days), each working day 08:00-12:00 and 14:00-18:00 in 20-minute slots, about
half of them booked (busy times) and the rest free slots (uploaded as free slots): about 16,700
busy times and 16,700 free slots, plus pending manual bookings for reconciliation to look at.
Each measured upload differs from the stored one by 50 slots booked (a free slot becomes a busy
time) and back, so the slot diff, the gaps partners see and the reconciliation all run.
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
from typing import Any

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


DAY = 86_400
SLOT = 20 * 60


def duria_calendar(rng: random.Random, start: int, columns: int = 4) -> tuple[dict[str, IntervalArray], ...]:
    """(busy, free, busy after 50 bookings, free after them) per column, 730 days from `start`."""
    busy: dict[str, list[tuple[int, int]]] = {}
    free: dict[str, list[tuple[int, int]]] = {}
    for c in range(columns):
        taken, open_ = [], []
        for day in range(730):
            if day % 7 in (5, 6):
                continue
            base = start + day * DAY
            for lo, hi in ((8 * 3600, 12 * 3600), (14 * 3600, 18 * 3600)):
                for s in range(base + lo, base + hi, SLOT):
                    (taken if rng.random() < 0.5 else open_).append((s, s + SLOT))
        busy[f"col-{c}"], free[f"col-{c}"] = taken, open_
    later_busy = {k: list(v) for k, v in busy.items()}
    later_free = {k: list(v) for k, v in free.items()}
    for _ in range(50):  # 50 free slots booked and entered between two uploads
        column = f"col-{rng.randrange(columns)}"
        slot = later_free[column].pop(rng.randrange(len(later_free[column])))
        later_busy[column].append(slot)

    def arrays(table: dict[str, list[tuple[int, int]]]) -> dict[str, IntervalArray]:
        return {k: IntervalArray.of(v) for k, v in table.items()}

    return arrays(busy), arrays(free), arrays(later_busy), arrays(later_free)


def _slot_request(
    busy: dict[str, IntervalArray], free: dict[str, IntervalArray], window: time_pb2.TimeInterval
) -> snapshot_service_pb2.UploadSnapshotRequest:
    request = _request(busy, window)
    for column in request.columns:
        column_id = column.column.rsplit("/", 1)[1]
        column.free_slots.extend(_interval(s, e) for s, e in free[column_id].pairs())
    return request


async def run_slot_list(runs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        practice = {
            "display_name": "DURIA benchmark",
            "window_days": 730,
            "slot_list": True,
            "columns": [
                {"id": f"col-{c}", "display_name": f"Column {c}", "weekly_hours": ["mon 08:00-18:00"]} for c in range(4)
            ],
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
        gateway.router.snapshot_keepers["bench"].clock = lambda: START
        try:
            window = (
                await stub.GetUploadWindow(snapshot_service_pb2.GetUploadWindowRequest(parent="practices/bench"))
            ).window
            busy, free, later_busy, later_free = duria_calendar(random.Random(7), window.start_time.seconds)
            _pending_bookings(gateway, window.start_time.seconds)
            first = _slot_request(busy, free, window)
            began = time.perf_counter()
            answer = await stub.UploadSnapshot(first)
            backfill = time.perf_counter() - began
            assert answer.added_count == sum(len(v) for v in busy.values())
            await asyncio.sleep(1)
            timings = []
            for run in range(runs):  # back and forth: 50 slots booked, then free again
                request = _slot_request(*((later_busy, later_free) if run % 2 == 0 else (busy, free)), window)
                began = time.perf_counter()
                await stub.UploadSnapshot(request)
                timings.append(time.perf_counter() - began)
            return {
                "bytes": first.ByteSize(),
                "busy_times": sum(len(v) for v in busy.values()),
                "free_slots": sum(len(v) for v in free.values()),
                "backfill_ms": backfill * 1000,
                "median_ms": statistics.median(timings) * 1000,
                "max_ms": max(timings) * 1000,
            }
        finally:
            await channel.close()
            await gateway.stop(0)


def _pending_bookings(gateway: Gateway, window_start: int) -> None:
    """100 manual bookings waiting in the inbox (rows as the booking desk writes them), in the
    lunch break where no upload shows busy time: reconciliation looks at them on every upload."""

    def insert(tx: Any) -> None:
        for n in range(100):
            column = f"col-{n % 4}"
            start = window_start + (n * 7) * DAY + 12 * 3600 + 1800
            tx.execute(
                "INSERT INTO appointments (id, practice, partner, column_id, type_id, start_s, end_s, patient,"
                " state, mode, create_s) VALUES (?, 'bench', 'p', ?, 't', ?, ?, '', 'pending_transfer', 'manual', 0)",
                (f"a{n}", column, start, start + SLOT),
            )

    gateway.router.store.run_sync(insert)


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
    parser.add_argument("--slot-list", action="store_true", help="4 columns of busy times and free slots (DURIA)")
    args = parser.parse_args()
    if args.slot_list:
        result = asyncio.run(run_slot_list(args.runs))
        print(
            f"slot-list upload, 4 columns x 24 months: {result['busy_times']:.0f} busy times and "
            f"{result['free_slots']:.0f} free slots ({result['bytes'] / 1e6:.1f} MB): backfill "
            f"{result['backfill_ms']:.0f} ms; 50 slots booked: median {result['median_ms']:.0f} ms, "
            f"max {result['max_ms']:.0f} ms over {args.runs} uploads (target: median at most 100 ms)"
        )
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return
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
