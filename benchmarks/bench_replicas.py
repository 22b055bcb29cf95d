"""Gateway replicas: a change made on one replica at watchers on the others, and memory per practice.

    python benchmarks/bench_replicas.py [--watchers 100] [--changes 200] [--runs 3] [--json PATH]
                                        [--skip-memory] [--skip-latency]

Latency (issue 21): three replicas of one practice on one PostgreSQL database (127.0.0.1:5432,
trust, database `test`, a fresh schema per run; OTV_TEST_POSTGRES overrides), nginx in front as in
tests/test_replicas.py. Replica 0 runs in this process (so a change's moment is known on the same
clock as its arrival), replicas 1 and 2 are their own processes. `--watchers` WatchChanges streams
are spread over the three replicas, one in three on each (dialled directly, so each watcher's
replica is known). Then `--changes` busy-time changes are published into replica 0's feed, one
every 20 ms, as its connector's change stream would; latency is from the publication to the event's
arrival, per (change, watcher). Replica 0 stores each change, PostgreSQL notifies replicas 1 and 2
at commit, they read it and send it. Target: watchers on another replica, median at most 20 ms and
p99 at most 100 ms. Watchers on replica 0 itself are shown for comparison.

Memory: what one replica keeps for one practice of the availability benchmark's size (scenario.py:
20 columns, 24 months, about 30,000 appointments): its kept engine with the calendar configuration
(after a slot search of every appointment type over 24 months, so per-type slot caches are full),
measured with tracemalloc (numpy reports its arrays to it) and as the growth of the process's
resident memory over five such practices kept at once, and the change feed's in-memory tail
at its cap (change_feed.TAIL_EVENTS). No target: docs/deployment.md sizes replicas from these figures.

Notification cost: commits per second of one-event change-feed transactions from 4 threads, with and
without NOTIFY (PostgreSQL serialises notifying commits on one lock), on the same database.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from load_balancer import PRACTICE, nginx, nginx_binary, start_replica, write_config
from patient_env import as_partner, header_identity
from scenario import write_scenario
from store_backends import POSTGRES_URL, postgres_available, store_for

from gateway.app import Gateway
from gateway.calendar_cache import CalendarCache
from gateway.change_feed import TAIL_EVENTS, PracticeFeed
from gateway.config import load_config
from gateway.encryption import FieldCipher
from gateway.practice_reader import PracticeReader
from gateway.state_store import SqliteStore, StateStore, Tx
from otv_sdk.changes import BusyTimeChanged, Change
from otv_sdk.client import PartnerClient
from otv_sdk.models import Interval
from otv_sdk.ports import CallContext, PageRequest, SlotQuery
from otv_sdk.reference import create_adapter

ANCHOR = date.today() + timedelta(days=14)
TARGET_MEDIAN_MS, TARGET_P99_MS = 20.0, 100.0
INTERVAL_S = 0.02


def _percentile(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100)[q - 1] if len(samples) > 1 else samples[0]


def _change(index: int) -> BusyTimeChanged:
    """A change whose start names it (minute `index` after the anchor), so arrivals are matched."""
    start = datetime.combine(ANCHOR, datetime.min.time(), UTC) + timedelta(minutes=index)
    return BusyTimeChanged("berg", (Interval(start, start + timedelta(minutes=1)),))


def _index(change: Change) -> int | None:
    if not isinstance(change, BusyTimeChanged) or not change.added:
        return None
    delta = change.added[0].start - datetime.combine(ANCHOR, datetime.min.time(), UTC)
    return int(delta.total_seconds() // 60)


async def _watch(
    client: PartnerClient, cursor: str, arrivals: dict[int, float], ready: asyncio.Event, count: int
) -> None:
    stream = client.watch_changes(PRACTICE, (), cursor, metadata=as_partner("alpha"))
    ready.set()
    async for event in stream:
        index = _index(event.change)
        if index is not None and index not in arrivals:
            arrivals[index] = time.perf_counter()
            if len(arrivals) == count:
                return


async def latency_run(watchers: int, changes: int, folder: Path) -> dict[str, list[float]]:
    """One cluster: latencies (ms) per watcher placement, 'other' and 'same' replica."""
    pvs = folder / "pvs.sqlite"
    seeded = create_adapter(PRACTICE, {"database": str(pvs), "demo": True, "demo_anchor": ANCHOR.isoformat()})
    await seeded.aclose()
    with store_for("postgres", folder) as (store, url):
        store.close()
        configs = [write_config(folder / f"replica-{i}.toml", url, pvs, 0, ANCHOR.isoformat()) for i in range(3)]
        local = await Gateway.start(load_config(configs[0]), header_identity)
        others = [await start_replica(config) for config in configs[1:]]
        addresses = [local.address, *(r.address for r in others)]
        clients = [PartnerClient.connect(a) for a in addresses]
        try:
            async with nginx(folder / "nginx", addresses) as balancer:
                through = PartnerClient.connect(balancer)
                window = Interval(datetime.now(UTC), datetime.now(UTC) + timedelta(days=1))
                _, cursor = await through.busy_snapshot(PRACTICE, window, metadata=as_partner("alpha"))
                await through.close()
            feed = local.router.feed(PRACTICE)
            assert feed is not None
            arrivals: list[dict[int, float]] = [{} for _ in range(watchers)]
            readies = [asyncio.Event() for _ in range(watchers)]
            tasks = [
                asyncio.create_task(_watch(clients[i % 3], cursor, arrivals[i], readies[i], changes))
                for i in range(watchers)
            ]
            await asyncio.gather(*(r.wait() for r in readies))
            await asyncio.sleep(1.0)  # every stream is open and waiting on its replica's tail
            sent: dict[int, float] = {}
            for index in range(changes):
                sent[index] = time.perf_counter()
                feed.publish(_change(index))
                await asyncio.sleep(INTERVAL_S)
            await asyncio.wait(tasks, timeout=30)
            for task in tasks:
                task.cancel()
            result: dict[str, list[float]] = {"same": [], "other": [], "missing": []}
            for i, seen in enumerate(arrivals):
                placement = "same" if i % 3 == 0 else "other"
                result[placement] += [(seen[k] - sent[k]) * 1000 for k in sent if k in seen]
                result["missing"] += [float(k) for k in sent if k not in seen]
            return result
        finally:
            for client in clients:
                await client.close()
            for replica in others:
                replica.kill()
                await replica.process.wait()
            await local.stop(0)


def _row(name: str, samples: list[float], target: bool) -> dict[str, Any]:
    median, p99 = statistics.median(samples), _percentile(samples, 99)
    return {
        "name": name,
        "samples": len(samples),
        "median_ms": round(median, 2),
        "p90_ms": round(_percentile(samples, 90), 2),
        "p99_ms": round(p99, 2),
        "max_ms": round(max(samples), 2),
        "target": f"median <= {TARGET_MEDIAN_MS:.0f} ms, p99 <= {TARGET_P99_MS:.0f} ms" if target else None,
        "meets_target": (median <= TARGET_MEDIAN_MS and p99 <= TARGET_P99_MS) if target else None,
    }


async def bench_latency(watchers: int, changes: int, runs: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for run in range(runs):
        with tempfile.TemporaryDirectory() as folder:
            result = await latency_run(watchers, changes, Path(folder))
        if result["missing"]:
            print(f"run {run + 1}: {len(result['missing'])} (change, watcher) pairs never arrived", file=sys.stderr)
        rows.append(_row(f"other_replica_run{run + 1}", result["other"], True) | {"missing": len(result["missing"])})
        rows.append(_row(f"same_replica_run{run + 1}", result["same"], False))
    other = [r for r in rows if r["name"].startswith("other")]
    summary = {
        "name": "other_replica_median_of_runs",
        "median_ms": round(statistics.median(r["median_ms"] for r in other), 2),
        "p99_ms": round(statistics.median(r["p99_ms"] for r in other), 2),
        "runs": len(other),
    }
    summary["meets_target"] = summary["median_ms"] <= TARGET_MEDIAN_MS and summary["p99_ms"] <= TARGET_P99_MS
    return [*rows, summary]


_RSS_PRACTICES = 5


def _rss_kib() -> int:
    """This process's resident set (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


async def bench_memory() -> list[dict[str, Any]]:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    first_day = (now - timedelta(days=now.weekday())).date()
    window = Interval(now, now + timedelta(days=730))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        database = Path(folder) / "bench-practice.sqlite"
        write_scenario(database, first_day)
        adapter = create_adapter("bench", {"database": str(database), "demo": False})
        assert adapter.calendar is not None
        ctx = CallContext("bench")
        calendar = await adapter.calendar.list_calendars(ctx)  # the adapter's own caches warm, not counted
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        listeners: list[Any] = []
        reader = PracticeReader(CalendarCache(adapter.calendar, listeners.append), announced=True)
        await reader.list_calendars(ctx)
        await reader.find_slots(ctx, SlotQuery("kontrolle", window, (), PageRequest(1)))  # builds and keeps
        gc.collect()
        built = tracemalloc.get_traced_memory()[0] - before
        for kind in calendar.appointment_types:
            await reader.find_slots(ctx, SlotQuery(kind.id, window, (), PageRequest(1000)))
        gc.collect()
        warm = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        assert reader.kept_engine is not None
        busy = sum(len(reader.kept_engine.blocked(c.id)) for c in calendar.columns)
        rows.append({"name": "kept_engine_built", "kib": round(built / 1024), "busy_intervals": busy})
        rows.append({"name": "kept_engine_all_types_searched", "kib": round(warm / 1024)})
        # The process's resident memory for several kept practices (allocator overhead included).
        readers = []
        gc.collect()
        rss = _rss_kib()
        for _ in range(_RSS_PRACTICES):
            kept = PracticeReader(CalendarCache(adapter.calendar, listeners.append), announced=True)
            for kind in calendar.appointment_types:
                await kept.find_slots(ctx, SlotQuery(kind.id, window, (), PageRequest(1000)))
            readers.append(kept)
        gc.collect()
        per_practice = (_rss_kib() - rss) / _RSS_PRACTICES
        rows.append({"name": "rss_per_kept_practice", "kib": round(per_practice), "practices": _RSS_PRACTICES})
        readers.clear()
        await adapter.aclose()
        store = SqliteStore(Path(folder) / "state.sqlite")
        feed = PracticeFeed("bench", store, FieldCipher({"k1": bytes(range(32))}, "k1"), poll_seconds=60)
        try:
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            for index in range(TAIL_EVENTS):
                feed.publish(_change(index))
            while feed._known < TAIL_EVENTS:  # noqa: ASYNC110 - the writer stored and read back all of them
                await asyncio.sleep(0.05)
            gc.collect()
            tail = tracemalloc.get_traced_memory()[0] - before
            tracemalloc.stop()
            rows.append({"name": "feed_tail_at_cap", "events": TAIL_EVENTS, "kib": round(tail / 1024)})
        finally:
            await feed.aclose()
            store.close()
    return rows


def _commits(store: StateStore, announced: bool, seconds: float, writers: int) -> int:
    """Commits in `seconds` of one-event change-feed transactions from `writers` threads."""
    counts = [0] * writers
    until = time.perf_counter() + seconds

    def write(writer: int) -> None:
        practice = f"p{writer}-{announced}"
        while time.perf_counter() < until:
            seq = counts[writer] + 1

            def work(tx: Tx, seq: int = seq) -> None:
                tx.lock(f"changes:{practice}")
                tx.execute(
                    "INSERT INTO change_events (practice, seq, at_s, partner, column_id, body)"
                    " VALUES (?, ?, ?, NULL, NULL, ?)",
                    (practice, seq, int(time.time()), "x" * 200),
                )
                if announced:
                    tx.announce(f"feed:{practice} {seq}@{time.time():.6f}")

            store.run_sync(work, durable=False)  # as the feed's writer stores
            counts[writer] = seq

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts)


def bench_notify(seconds: float = 3.0, writers: int = 4) -> list[dict[str, Any]]:
    """Commits per second of small change-feed transactions (one event each, a practice per writer
    thread), with and without the announcement: what NOTIFY costs PostgreSQL (it serialises the
    commits of notifying transactions on one queue lock)."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder, store_for("postgres", Path(folder)) as (store, _):
        for announced in (False, True):
            commits = _commits(store, announced, seconds, writers)
            name = "feed_commits_announced" if announced else "feed_commits_not_announced"
            rows.append({"name": name, "writers": writers, "commits_per_second": round(commits / seconds)})
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    if not args.skip_latency:
        reason = postgres_available()
        if reason is not None:
            raise SystemExit(f"{reason}: the replica benchmark needs PostgreSQL at {POSTGRES_URL}")
        if nginx_binary() is None:
            raise SystemExit("nginx is not installed (apt-get install nginx): the replica benchmark puts it in front")
        rows += await bench_latency(args.watchers, args.changes, args.runs)
        rows += bench_notify()
    if not args.skip_memory:
        rows += await bench_memory()
    for row in rows:
        print(json.dumps(row))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"watchers": args.watchers, "changes": args.changes, "rows": rows}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
