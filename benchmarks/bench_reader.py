"""Reader calls end to end through the gateway over loopback, for both adapter transports.

    python benchmarks/bench_reader.py [--runs 30] [--json PATH]

Prints the median and p90 of each measurement (milliseconds) and the response size. This is the
baseline the availability engine's targets are measured against; no target is asserted here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date
from datetime import time as clock
from functools import partial
from pathlib import Path
from typing import Any

from signed_partner import NO_PARTNER_LIMITS, register, signed_channel

from gateway.app import Gateway
from gateway.config import parse_config
from otv.v1 import reader_service_pb2, reader_service_pb2_grpc, time_pb2
from otv_rules.wallclock import to_utc, zone
from otv_sdk import conversion as cv
from otv_sdk.adapter_server import serve_adapters
from otv_sdk.models import Interval
from otv_sdk.reference import create_adapter
from otv_sdk.timewindow import add_months

ANCHOR = date(2027, 3, 22)
SETTINGS = {"database": ":memory:", "demo": True, "demo_anchor": ANCHOR.isoformat()}


@asynccontextmanager
async def running_gateway(transport: str) -> AsyncIterator[Gateway]:
    remote = None
    if transport == "in_process":
        adapter: dict[str, Any] = {"plugin": "reference", "settings": SETTINGS}
    else:
        remote = await serve_adapters({"demo": create_adapter("demo", SETTINGS)})
        adapter = {"remote": {"address": f"127.0.0.1:{remote.port}"}}
    config = parse_config(
        {
            "gateway": {"listen": "127.0.0.1:0", "state_store": "sqlite://:memory:", "rate_limit": NO_PARTNER_LIMITS},
            "practices": {"demo": {"adapter": adapter}},
        }
    )
    gateway = await Gateway.start(config)
    try:
        yield gateway
    finally:
        await gateway.stop(0)
        if remote is not None:
            await remote.stop(0)


async def measure(call: Callable[[], Awaitable[Any]], runs: int) -> tuple[list[float], Any]:
    result = await call()  # warm-up
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        result = await call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples, result


async def bench_transport(transport: str, runs: int, window: time_pb2.TimeInterval) -> list[dict[str, Any]]:
    parent = "practices/demo"
    rows = []
    async with running_gateway(transport) as gateway, signed_channel(gateway, register(gateway)) as channel:
        stub = reader_service_pb2_grpc.ReaderServiceStub(channel)
        cases: dict[str, Callable[[], Awaitable[Any]]] = {
            "grpc_list_calendars": partial(stub.ListCalendars, reader_service_pb2.ListCalendarsRequest(parent=parent)),
            "grpc_busy_times_24m": partial(
                stub.ListBusyTimes, reader_service_pb2.ListBusyTimesRequest(parent=parent, window=window)
            ),
            "grpc_working_hours_24m": partial(
                stub.ListWorkingHours,
                reader_service_pb2.ListWorkingHoursRequest(parent=parent, window=window),
            ),
        }
        for name, call in cases.items():
            samples, response = await measure(call, runs)
            packed = [*getattr(response, "busy_times", []), *getattr(response, "working_hours", [])]
            rows.append(
                {
                    "name": f"{name}[{transport}]",
                    "median_ms": round(statistics.median(samples), 3),
                    "p90_ms": round(statistics.quantiles(samples, n=10)[-1], 3),
                    "runs": runs,
                    "response_bytes": response.ByteSize(),
                    "intervals": sum(len(p.durations) for p in packed),
                }
            )
    return rows


async def bench(runs: int) -> list[dict[str, Any]]:
    start = to_utc(ANCHOR, clock(0), zone("Europe/Berlin"))
    window = cv.interval_to_proto(Interval(start, add_months(start, 24)))
    return [row for transport in ("in_process", "remote") for row in await bench_transport(transport, runs, window)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    rows = asyncio.run(bench(args.runs))
    print(f"{'benchmark':40} {'median ms':>10} {'p90 ms':>10} {'bytes':>10} {'intervals':>10}")
    for row in rows:
        print(
            f"{row['name']:40} {row['median_ms']:>10.3f} {row['p90_ms']:>10.3f}"
            f" {row['response_bytes']:>10} {row['intervals']:>10}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps({r["name"]: r for r in rows}, indent=2))


if __name__ == "__main__":
    main()
