"""Snapshot diff: 24 months x 20 columns (about 30,000 busy intervals) with 100 changes.

    python benchmarks/bench_snapshot_diff.py [--runs 20] [--start EPOCH_SECONDS] [--json PATH]

Target (issue 8): at most 50 ms. Prints the median and the slowest of the runs. `--start` moves the
24 months elsewhere (e.g. 2240000000, in 2040: the diff once packed starts into 32 bits, so
intervals past 2038 are worth timing too; the default, 2027, keeps figures comparable).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from otv_sdk.snapshot_diff import diff_snapshots
from otv_sdk.timeline import IntervalArray

START = 1_800_000_000
COLUMNS = 20
PER_COLUMN = 1_500  # 20 x 1,500 = 30,000 intervals
CHANGES = 100


def snapshots(rng: random.Random, start: int = START) -> tuple[dict[str, IntervalArray], dict[str, IntervalArray]]:
    before: dict[str, list[tuple[int, int]]] = {}
    for c in range(COLUMNS):
        starts = sorted(rng.sample(range(0, 730 * 24 * 4), PER_COLUMN))  # quarter hours over 24 months
        before[f"col-{c}"] = [(start + s * 900, start + s * 900 + rng.choice((900, 1200, 1800))) for s in starts]
    after = {c: list(v) for c, v in before.items()}
    for _ in range(CHANGES):  # a third removed, a third added, a third moved
        column = after[f"col-{rng.randrange(COLUMNS)}"]
        kind = rng.randrange(3)
        if kind in (0, 2):
            old_start, old_end = column.pop(rng.randrange(len(column)))
            if kind == 2:
                column.append((old_start + 3600, old_end + 3600))
        else:
            at = start + rng.randrange(730 * 24) * 3600
            column.append((at, at + 1200))
    return (
        {c: IntervalArray.of(v) for c, v in before.items()},
        {c: IntervalArray.of(sorted(v)) for c, v in after.items()},
    )


def main(runs: int, start: int = START) -> dict[str, float]:
    before, after = snapshots(random.Random(7), start)
    timings = []
    for _ in range(runs):
        begin = time.perf_counter()
        changes = diff_snapshots(before, after)
        timings.append((time.perf_counter() - begin) * 1000)
    changed = sum(len(c.added) + len(c.removed) for c in changes)
    total = sum(len(v) for v in before.values())
    median = statistics.median(timings)
    worst = max(timings)
    print(f"{total} intervals, {changed} interval changes: median {median:.2f} ms, max {worst:.2f} ms (target <= 50)")
    return {"intervals": total, "interval_changes": changed, "median_ms": median, "max_ms": max(timings)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--start", type=int, default=START, help="epoch seconds of the first quarter hour")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = main(args.runs, args.start)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
