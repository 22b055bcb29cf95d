"""A whole certification run of the reference adapter, in-process and behind a remote adapter server.

    python benchmarks/bench_conformance.py [--runs 3] [--json PATH]

Target (issues 7 and 19): a run takes at most 60 s. Prints the median and the slowest of the runs,
the five slowest cases of the last run, and the machine's load average before and after (the
figures mean little without it). The remote adapter server runs with the SDK's default heartbeat
(15 s, what `otv adapter serve` uses), so the remote figure includes `pvs.changes.heartbeat`
waiting for a real heartbeat on an idle stream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from otv_conformance import Target, run_suite
from otv_conformance.runner import RunResult
from otv_sdk.adapter_server import serve_adapters
from otv_sdk.reference import create_adapter

TARGET_SECONDS = 60.0
SANDBOX = {"sandbox": True, "demo": False}


async def _timed(target: Target) -> tuple[float, RunResult]:
    begin = time.perf_counter()
    run = await run_suite(target)
    elapsed = time.perf_counter() - begin
    if not run.certified:
        raise SystemExit("the reference adapter was not certified; fix that before measuring")
    return elapsed, run


async def main(runs: int) -> dict[str, Any]:
    figures: dict[str, Any] = {"load_average_before": [round(x, 2) for x in os.getloadavg()]}
    print(f"load average before: {figures['load_average_before']} on {os.cpu_count()} cores")
    server = await serve_adapters({"sandbox": create_adapter("sandbox", SANDBOX)})
    try:
        for name, target in (
            ("in_process", Target(plugin="reference", settings=SANDBOX)),
            ("remote", Target(remote=f"127.0.0.1:{server.port}")),
        ):
            timings = []
            last: RunResult | None = None
            for _ in range(runs):
                elapsed, last = await _timed(target)
                timings.append(elapsed)
            assert last is not None
            slowest = sorted(last.results, key=lambda r: r.duration, reverse=True)[:5]
            figures[name] = {
                "median_s": round(statistics.median(timings), 2),
                "max_s": round(max(timings), 2),
                "cases": len(last.results),
                "slowest_cases_ms": {r.case.id: round(r.duration * 1000) for r in slowest},
            }
            verdict = "ok" if max(timings) <= TARGET_SECONDS else "OVER TARGET"
            print(
                f"{name:<10} median {statistics.median(timings):6.2f} s  max {max(timings):6.2f} s"
                f"  ({len(last.results)} cases, target <= {TARGET_SECONDS:.0f} s: {verdict})"
            )
            for case_id, ms in figures[name]["slowest_cases_ms"].items():
                print(f"           {case_id:<40} {ms:6d} ms")
    finally:
        await server.stop(0)
    figures["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(f"load average after:  {figures['load_average_after']}")
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(main(args.runs))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
