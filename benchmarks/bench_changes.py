"""Change feed latency and fan-out: from a change in the PVS to the event at partners' streams.

    python benchmarks/bench_changes.py [--watchers 100] [--changes 200] [--runs 3] [--json PATH]

A reference practice behind a gateway (in-process plugin, SQLite state store on disk), `--watchers`
signed WatchChanges streams open; then `--changes` calendar writes in the PVS (the reference
adapter's calendar writer, as staff or another channel would), one every 20 ms. Latency is measured
per (change, watcher) from just before the write to the event's arrival. Targets (issue 8): median
at most 50 ms, p99 at most 500 ms with 100 watchers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import fake_adapters_bench
from signed_partner import NO_PARTNER_LIMITS, register

from gateway.app import Gateway
from gateway.config import parse_config
from otv_sdk.changes import BusyTimeChanged
from otv_sdk.client import PartnerClient
from otv_sdk.models import Interval
from otv_sdk.ports import CalendarEntry, CallContext
from otv_sdk.reference import create_adapter

ANCHOR = date.today() + timedelta(days=14)


async def one_run(watchers: int, changes: int, folder: Path) -> list[float]:
    adapter = create_adapter(
        "demo", {"database": str(folder / "pvs.sqlite"), "demo": True, "demo_anchor": ANCHOR.isoformat()}
    )
    fake_adapters_bench.ADAPTERS["demo"] = adapter
    config = parse_config(
        {
            "gateway": {
                "listen": "127.0.0.1:0",
                "shutdown_grace_seconds": 0,
                "secret_key": "ab" * 48,
                "state_store": f"sqlite:///{folder / 'state.sqlite'}",
                "rate_limit": NO_PARTNER_LIMITS,
            },
            "practices": {"demo": {"adapter": {"plugin": "fake_adapters_bench:shared"}}},
        }
    )
    gateway = await Gateway.start(config)
    sent: dict[tuple[int, int], float] = {}
    latencies: list[float] = []
    try:
        signer = register(gateway)
        clients = [PartnerClient.connect(gateway.address, signer=signer) for _ in range(max(1, watchers // 25))]
        window = Interval(datetime.now(UTC), datetime.now(UTC) + timedelta(days=1))
        _, cursor = await clients[0].busy_snapshot("demo", window)
        done = asyncio.Event()
        remaining = watchers * changes

        async def watch(client: PartnerClient) -> None:
            nonlocal remaining
            async for event in client.watch_changes("demo", cursor=cursor):
                if isinstance(event.change, BusyTimeChanged) and event.change.added:
                    start = event.change.added[0].start
                    key = (int(start.timestamp()), 0)
                    latencies.append(time.perf_counter() - sent[key])
                    remaining -= 1
                    if remaining == 0:
                        done.set()

        tasks = [asyncio.create_task(watch(clients[i % len(clients)])) for i in range(watchers)]
        await asyncio.sleep(1.0)
        writer = adapter.calendar_writer
        assert writer is not None
        base = datetime.combine(ANCHOR, datetime.min.time(), UTC)
        for n in range(changes):
            start = base + timedelta(days=n // 20, minutes=30 * (n % 20))
            entry = CalendarEntry(
                f"bench-{uuid.uuid4()}",
                "berg",
                "kontrolle",
                Interval(start, start + timedelta(minutes=20)),
                "p-1001",
                "staff",
                "",
            )
            sent[(int(start.timestamp()), 0)] = time.perf_counter()
            await writer.write_appointment(CallContext("staff"), entry)
            await asyncio.sleep(0.02)
        await asyncio.wait_for(done.wait(), 120)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            await client.close()
    finally:
        await gateway.stop(0)
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def main(watchers: int, changes: int, runs: int) -> dict[str, Any]:
    medians, p99s = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as folder:
            latencies = await one_run(watchers, changes, Path(folder))
        medians.append(statistics.median(latencies) * 1000)
        p99s.append(percentile(latencies, 0.99) * 1000)
        print(f"{watchers} watchers x {changes} changes: median {medians[-1]:.1f} ms, p99 {p99s[-1]:.1f} ms")
    median, p99 = statistics.median(medians), statistics.median(p99s)
    print(f"median of runs: median {median:.1f} ms (target <= 50), p99 {p99:.1f} ms (target <= 500)")
    return {"watchers": watchers, "changes": changes, "median_ms": medians, "p99_ms": p99s}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(main(args.watchers, args.changes, args.runs))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
