"""Availability engine benchmark (issue: free time and slots in milliseconds).

    python benchmarks/bench_availability.py [--runs 50] [--json PATH]

Generates the benchmark practice (scenario.py) into a temporary reference-adapter database, then
measures, each as the median (and p90) of --runs repetitions after a warm-up:
  free_time_whole_practice       all 20 columns, 730 days, in-process
  slots_one_type_24m             every slot of one type across its 20 allowed columns, 730 days
  next_available                 the first 10 slots of that type across all practitioners
  incremental_update             one appointment booked or cancelled, free time brought up to date
  grpc_free_time_whole_practice  the free-time query end to end through a gateway over loopback
Targets (the issue's): 3 ms, 15 ms, 1 ms, 0.2 ms, 20 ms and at most 400 KiB. Nothing is asserted
here; the table says whether each target is met.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from scenario import COLUMNS, write_scenario
from signed_partner import NO_PARTNER_LIMITS, register, signed_channel

from gateway.app import Gateway
from gateway.config import parse_config
from otv.v1 import reader_service_pb2, reader_service_pb2_grpc
from otv_sdk import conversion as cv
from otv_sdk.availability import AvailabilityEngine
from otv_sdk.availability_service import load_engine
from otv_sdk.models import Interval
from otv_sdk.ports import CallContext
from otv_sdk.reference import create_adapter

TARGETS_MS = {
    "free_time_whole_practice": 3.0,
    "slots_one_type_24m": 15.0,
    "next_available": 1.0,
    "incremental_update": 0.2,
    "grpc_free_time_whole_practice": 20.0,
}
MAX_RESPONSE_BYTES = 400 * 1024
DAY = 86400


def _stats(name: str, samples: list[float], **extra: Any) -> dict[str, Any]:
    median = statistics.median(samples)
    return {
        "name": name,
        "median_ms": round(median, 4),
        "p90_ms": round(statistics.quantiles(samples, n=10)[-1], 4),
        "runs": len(samples),
        "target_ms": TARGETS_MS[name],
        "meets_target": median <= TARGETS_MS[name],
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


async def bench_grpc(database: Path, window: Interval, runs: int) -> dict[str, Any]:
    settings = {"database": str(database), "demo": False}
    config = parse_config(
        {
            "gateway": {"listen": "127.0.0.1:0", "state_store": "sqlite://:memory:", "rate_limit": NO_PARTNER_LIMITS},
            "practices": {"bench": {"adapter": {"plugin": "reference", "settings": settings}}},
        }
    )
    gateway = await Gateway.start(config)
    try:
        signer = register(gateway)
        async with signed_channel(gateway, signer, **{"grpc.max_receive_message_length": 16 * 1024 * 1024}) as channel:
            stub = reader_service_pb2_grpc.ReaderServiceStub(channel)
            request = reader_service_pb2.GetFreeTimeRequest(
                parent="practices/bench", window=cv.interval_to_proto(window)
            )
            response = await stub.GetFreeTime(request, timeout=60)  # warm-up builds the engine
            samples = []
            for _ in range(runs):
                started = time.perf_counter()
                response = await stub.GetFreeTime(request, timeout=60)
                samples.append((time.perf_counter() - started) * 1000)
    finally:
        await gateway.stop(0)
    size = response.ByteSize()
    row = _stats("grpc_free_time_whole_practice", samples, response_bytes=size)
    row["meets_target"] = row["meets_target"] and size <= MAX_RESPONSE_BYTES
    return row


async def run(runs: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    first_day = (now - timedelta(days=now.weekday())).date()
    window = Interval(now, now + timedelta(days=730))
    lo, hi = int(window.start.timestamp()), int(window.end.timestamp())
    with tempfile.TemporaryDirectory() as folder:
        database = Path(folder) / "bench-practice.sqlite"
        started = time.perf_counter()
        write_scenario(database, first_day)
        generate_ms = (time.perf_counter() - started) * 1000
        adapter = create_adapter("bench", {"database": str(database), "demo": False})
        started = time.perf_counter()
        engine = await load_engine(adapter.reader, CallContext("bench"), lo - DAY, hi + 2 * DAY)
        build_ms = (time.perf_counter() - started) * 1000
        busy = sum(len(engine.blocked(c)) for c in COLUMNS)
        rows = bench_engine(engine, lo, hi, runs)
        await adapter.aclose()
        rows.append(await bench_grpc(database, window, runs))
    info = {"generate_ms": round(generate_ms), "engine_build_ms": round(build_ms), "blocked_intervals": busy}
    return rows, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    rows, info = asyncio.run(run(args.runs))
    print(
        f"scenario: {info['blocked_intervals']} blocked intervals (appointments + absences) in 20 columns;"
        f" generated in {info['generate_ms']} ms, engine built in {info['engine_build_ms']} ms"
    )
    print(f"{'benchmark':32} {'median ms':>10} {'p90 ms':>10} {'target':>8}  {'met':>4}  detail")
    for row in rows:
        detail = ", ".join(f"{k}={row[k]}" for k in ("intervals", "slots", "response_bytes") if k in row)
        met = "yes" if row["meets_target"] else "NO"
        figures = f"{row['median_ms']:>10.3f} {row['p90_ms']:>10.3f} {row['target_ms']:>8}"
        print(f"{row['name']:32} {figures}  {met:>4}  {detail}")
    if args.json is not None:
        args.json.write_text(json.dumps({"scenario": info, **{r["name"]: r for r in rows}}, indent=2))


if __name__ == "__main__":
    main()
