"""Availability engine benchmark (issue: free time and slots in milliseconds).

    python benchmarks/bench_availability.py [--runs 50] [--builds 7] [--json PATH]

Generates the benchmark practice (scenario.py) into a temporary reference-adapter database, then
measures, each as the median (and p90) of --runs repetitions after a warm-up:
  free_time_whole_practice       all 20 columns, 730 days, in-process
  slots_one_type_24m             every slot of one type across its 20 allowed columns, 730 days
  next_available                 the first 10 slots of that type across all practitioners
  incremental_update             one appointment booked or cancelled, free time brought up to date
  grpc_free_time_whole_practice  the free-time query end to end through a gateway over loopback,
                                 the practice an in-process plugin
  grpc_free_time_whole_practice_remote
                                 the same query through the same gateway for the same practice
                                 served by `serve_adapters` (PracticeDataService) and configured
                                 as a remote; the two are called alternately in one loop
  grpc_free_time_remote_ratio    remote median / in-process median of those two
  engine_build_remote            the engine for the gateway's horizon built from the remote's raw
                                 reads (`RemoteCalendarData` over a channel to the adapter server),
                                 median of --builds builds after one warm-up (alternating with
                                 builds from the served port directly, whose median is shown)
Targets (the issue's): 3 ms, 15 ms, 1 ms, 0.2 ms, 20 ms and at most 400 KiB; the remote within 1.2x
of the in-process figure (its own row, no target of its own), and an engine build from a remote's
reads within 500 ms. The adapter server runs in this process, on the gateway's event loop, as in
the tests: a remote PVS's own work is part of the figures, its separate process is not. Nothing
is asserted here; the table says whether each target is met.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from scenario import COLUMNS, write_scenario
from signed_partner import NO_PARTNER_LIMITS, register, signed_channel

from gateway.app import Gateway
from gateway.config import parse_config
from otv.v1 import reader_service_pb2, reader_service_pb2_grpc
from otv_rules.availability import AvailabilityEngine
from otv_rules.availability_service import load_engine
from otv_sdk import conversion as cv
from otv_sdk.adapter_server import AdapterServer, serve_adapters
from otv_sdk.models import Interval
from otv_sdk.ports import CalendarDataPort, CallContext
from otv_sdk.practice_data_client import PracticeDataClient, RemoteCalendarData
from otv_sdk.reference import create_adapter

TARGETS_MS = {
    "free_time_whole_practice": 3.0,
    "slots_one_type_24m": 15.0,
    "next_available": 1.0,
    "incremental_update": 0.2,
    "grpc_free_time_whole_practice": 20.0,
    "engine_build_remote": 500.0,
}
MAX_RESPONSE_BYTES = 400 * 1024
MAX_REMOTE_RATIO = 1.2
REMOTE = "remote"  # the gateway's id of the practice it reaches through the adapter server
MESSAGE_OPTIONS = {"grpc.max_receive_message_length": 16 * 1024 * 1024}
DAY = 86400


def _stats(name: str, samples: list[float], **extra: Any) -> dict[str, Any]:
    """A timed row; a name without a target of its own gets target_ms and meets_target None."""
    median = statistics.median(samples)
    target = TARGETS_MS.get(name)
    return {
        "name": name,
        "median_ms": round(median, 4),
        "p90_ms": round(statistics.quantiles(samples, n=10)[-1], 4),
        "runs": len(samples),
        "target_ms": target,
        "meets_target": None if target is None else median <= target,
        **extra,
    }


def _time(call: Callable[[], Any], runs: int) -> tuple[list[float], Any]:
    result = call()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        result = call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples, result


def bench_engine(engine: AvailabilityEngine, lo: int, hi: int, runs: int) -> list[dict[str, Any]]:
    rows = []
    samples, free = _time(lambda: engine.free_time(lo, hi), runs)
    rows.append(_stats("free_time_whole_practice", samples, intervals=sum(len(c.intervals) for c in free)))
    samples, slots = _time(lambda: engine.slots("kontrolle", lo, hi), runs)
    rows.append(_stats("slots_one_type_24m", samples, slots=len(slots)))
    samples, first = _time(lambda: engine.slots("kontrolle", lo, hi, limit=10), runs)
    rows.append(_stats("next_available", samples, slots=len(first)))
    # Book and cancel 30-minute appointments at random working-day times, alternately.
    rng = random.Random(7)
    samples = []
    for _ in range(runs):
        column = rng.choice(COLUMNS)
        start = lo + rng.randrange(0, (hi - lo - DAY) // 300) * 300
        started = time.perf_counter()
        engine.add_busy(column, start, start + 1800)
        samples.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        engine.remove_busy(column, start, start + 1800)
        samples.append((time.perf_counter() - started) * 1000)
    rows.append(_stats("incremental_update", samples))
    return rows


async def bench_grpc(database: Path, remote_port: int, window: Interval, runs: int) -> list[dict[str, Any]]:
    """GetFreeTime of the whole practice through one gateway, in-process plugin and remote alternately."""
    settings = {"database": str(database), "demo": False}
    config = parse_config(
        {
            "gateway": {
                "listen": "127.0.0.1:0",
                "state_store": "sqlite://:memory:",
                "secret_key": secrets.token_hex(32),  # no gateway-secret.key left in the working directory
                "rate_limit": NO_PARTNER_LIMITS,
            },
            "practices": {
                "bench": {"adapter": {"plugin": "reference", "settings": settings}},
                REMOTE: {"adapter": {"remote": {"address": f"127.0.0.1:{remote_port}", "practice": "bench"}}},
            },
        }
    )
    gateway = await Gateway.start(config)
    samples: dict[str, list[float]] = {"bench": [], REMOTE: []}
    sizes: dict[str, int] = {}
    try:
        signer = register(gateway)
        async with signed_channel(gateway, signer, **MESSAGE_OPTIONS) as channel:
            stub = reader_service_pb2_grpc.ReaderServiceStub(channel)
            requests = {
                practice: reader_service_pb2.GetFreeTimeRequest(
                    parent=f"practices/{practice}", window=cv.interval_to_proto(window)
                )
                for practice in samples
            }
            # Warm-up: the first call builds the engine the gateway keeps (for the remote from its
            # reads over PracticeDataService); a few more so both answer from a kept engine.
            for _ in range(3):
                for practice, request in requests.items():
                    sizes[practice] = (await stub.GetFreeTime(request, timeout=60)).ByteSize()
            for index in range(runs):
                # Alternate which goes first, so neither always follows the other.
                order = list(requests) if index % 2 == 0 else list(reversed(requests))
                for practice in order:
                    started = time.perf_counter()
                    response = await stub.GetFreeTime(requests[practice], timeout=60)
                    samples[practice].append((time.perf_counter() - started) * 1000)
                    sizes[practice] = response.ByteSize()
    finally:
        await gateway.stop(0)
    local = _stats("grpc_free_time_whole_practice", samples["bench"], response_bytes=sizes["bench"])
    local["meets_target"] = local["meets_target"] and sizes["bench"] <= MAX_RESPONSE_BYTES
    remote = _stats("grpc_free_time_whole_practice_remote", samples[REMOTE], response_bytes=sizes[REMOTE])
    ratio = statistics.median(samples[REMOTE]) / statistics.median(samples["bench"])
    ratio_row = {
        "name": "grpc_free_time_remote_ratio",
        "ratio": round(ratio, 3),
        "target_ratio": MAX_REMOTE_RATIO,
        "meets_target": ratio <= MAX_REMOTE_RATIO,
        "runs": runs,
    }
    return [local, remote, ratio_row]


async def bench_remote_build(served: CalendarDataPort, port: int, lo: int, hi: int, builds: int) -> dict[str, Any]:
    """The engine built from the remote's raw reads over a real channel (median of several builds);
    for comparison, built in the same loop from `served`, the port the adapter server reads."""
    ctx = CallContext("bench")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=list(MESSAGE_OPTIONS.items())) as channel:
        remote = RemoteCalendarData(PracticeDataClient(channel, "bench"))
        await load_engine(remote, ctx, lo, hi)  # warm-up: the channel connects, the database is cached
        samples: dict[str, list[float]] = {"remote": [], "in_process": []}
        for _ in range(builds):
            for name, data in (("remote", remote), ("in_process", served)):
                started = time.perf_counter()
                engine = await load_engine(data, ctx, lo, hi)
                samples[name].append((time.perf_counter() - started) * 1000)
    return _stats(
        "engine_build_remote",
        samples["remote"],
        in_process_median_ms=round(statistics.median(samples["in_process"]), 1),
        blocked_intervals=sum(len(engine.blocked(c)) for c in COLUMNS),
    )


async def run(runs: int, builds: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    first_day = (now - timedelta(days=now.weekday())).date()
    window = Interval(now, now + timedelta(days=730))
    lo, hi = int(window.start.timestamp()), int(window.end.timestamp())
    with tempfile.TemporaryDirectory() as folder:
        database = Path(folder) / "bench-practice.sqlite"
        started = time.perf_counter()
        write_scenario(database, first_day)
        generate_ms = (time.perf_counter() - started) * 1000
        settings = {"database": str(database), "demo": False}
        adapter = create_adapter("bench", settings)
        assert adapter.calendar is not None
        started = time.perf_counter()
        engine = await load_engine(adapter.calendar, CallContext("bench"), lo - DAY, hi + 2 * DAY)
        build_ms = (time.perf_counter() - started) * 1000
        busy = sum(len(engine.blocked(c)) for c in COLUMNS)
        rows = bench_engine(engine, lo, hi, runs)
        await adapter.aclose()
        # The same practice (the same database) served as a remote PVS would serve it.
        served = create_adapter("bench", settings)
        assert served.calendar is not None
        server: AdapterServer = await serve_adapters({"bench": served})
        try:
            rows += await bench_grpc(database, server.port, window, runs)
            rows.append(await bench_remote_build(served.calendar, server.port, lo - DAY, hi + 2 * DAY, builds))
        finally:
            await server.stop(0)
    info = {"generate_ms": round(generate_ms), "engine_build_ms": round(build_ms), "blocked_intervals": busy}
    return rows, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--builds", type=int, default=7, help="engine builds from the remote's reads")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    rows, info = asyncio.run(run(args.runs, args.builds))
    print(
        f"scenario: {info['blocked_intervals']} blocked intervals (appointments + absences) in 20 columns;"
        f" generated in {info['generate_ms']} ms, engine built in {info['engine_build_ms']} ms"
    )
    print(f"{'benchmark':36} {'median ms':>10} {'p90 ms':>10} {'target':>8}  {'met':>4}  detail")
    for row in rows:
        met = {True: "yes", False: "NO", None: "-"}[row["meets_target"]]
        if "ratio" in row:  # a ratio of two medians, not a time
            figures = f"{row['ratio']:>10.3f} {'':>10} {row['target_ratio']:>8}"
            detail = "remote median / in-process median, measured alternately in one run"
        else:
            keys = ("intervals", "slots", "response_bytes", "in_process_median_ms")
            detail = ", ".join(f"{k}={row[k]}" for k in keys if k in row)
            target = "-" if row["target_ms"] is None else row["target_ms"]
            figures = f"{row['median_ms']:>10.3f} {row['p90_ms']:>10.3f} {target:>8}"
        print(f"{row['name']:36} {figures}  {met:>4}  {detail}")
    if args.json is not None:
        args.json.write_text(json.dumps({"scenario": info, **{r["name"]: r for r in rows}}, indent=2))


if __name__ == "__main__":
    main()
