"""From a partner's booking to the item on the practice's WatchInbox stream, with many practices watching.

    python benchmarks/bench_inbox.py [--practices 100] [--bookings 200] [--store sqlite|postgresql://...]

A gateway on loopback serving N reference practices in confirmation mode, each watched by its PVS
over PracticeService.WatchInbox (one stream per practice, all open at once). A partner books in
the practices in turn; each booking is timed from just before BookAppointment is sent until its
item arrives on that practice's stream. Target: median at most 50 ms, p99 at most 500 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from patient_env import as_partner, header_identity

from gateway.app import Gateway
from gateway.config import parse_config
from otv.v1 import practice_service_pb2, practice_service_pb2_grpc
from otv_sdk.client import PartnerClient
from otv_sdk.models import Interval, Slot
from otv_sdk.ports import PageRequest, PatientQuery, SlotQuery, SlotRequest

SECRET = "5e" * 48
TARGET_MEDIAN_MS = 50.0
TARGET_P99_MS = 500.0


async def _slots(client: PartnerClient, practice: str, first_day: date, needed: int) -> list[Slot]:
    start = datetime.combine(first_day, datetime.min.time(), UTC)
    query = SlotQuery("kontrolle", Interval(start, start + timedelta(days=60)), (), PageRequest(1000))
    page = await client.find_slots(practice, query, metadata=as_partner("bench"))
    chosen: list[Slot] = []
    last_end: dict[str, datetime] = {}
    for slot in page.items:
        if slot.start >= last_end.get(slot.column_id, start):
            chosen.append(slot)
            last_end[slot.column_id] = slot.end
        if len(chosen) == needed:
            break
    if len(chosen) < needed:
        raise SystemExit(f"only {len(chosen)} disjoint slots in practice {practice}")
    return chosen


async def run(practices: int, bookings: int, store: str) -> dict[str, Any]:
    first_day = date.today() + timedelta(days=14)
    schema = f"otv_bench_{secrets.token_hex(4)}"
    ids = [f"p{i:03d}" for i in range(practices)]
    with tempfile.TemporaryDirectory() as folder:
        if store.startswith("postgres"):
            separator = "&" if "?" in store else "?"
            state = f"{store}{separator}options=-csearch_path%3D{schema}"
            with psycopg.connect(store, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{schema}"')
        else:
            state = f"sqlite:///{Path(folder) / 'state.sqlite'}"
        settings = {"database": ":memory:", "demo": True, "demo_anchor": first_day.isoformat()}
        config = parse_config(
            {
                "gateway": {"listen": "127.0.0.1:0", "secret_key": SECRET, "state_store": state},
                "practices": {
                    p: {"adapter": {"plugin": "reference", "settings": settings}, "booking": {"mode": "confirmation"}}
                    for p in ids
                },
            }
        )
        gateway = await Gateway.start(config, identify=header_identity)
        arrivals: dict[str, asyncio.Future[float]] = {}
        try:
            async with (
                PartnerClient.connect(gateway.address) as client,
                grpc.aio.insecure_channel(gateway.address) as channel,
            ):
                stub = practice_service_pb2_grpc.PracticeServiceStub(channel)
                partner = as_partner("bench")
                streams = [
                    stub.WatchInbox(practice_service_pb2.WatchInboxRequest(parent=f"practices/{p}")) for p in ids
                ]

                async def watch(stream: Any) -> None:
                    async for event in stream:
                        if event.WhichOneof("event") == "item":
                            future = arrivals.setdefault(event.item.name, asyncio.get_running_loop().create_future())
                            if not future.done():
                                future.set_result(time.perf_counter())

                watchers = [asyncio.create_task(watch(s)) for s in streams]
                per_practice = -(-bookings // practices)
                patients: dict[str, str] = {}
                slots: dict[str, list[Slot]] = {}
                for p in ids[: min(practices, bookings)]:
                    patient, _ = await client.find_or_create_patient(
                        p, PatientQuery("Bench", "Mark", date(1980, 1, 1)), metadata=partner
                    )
                    patients[p] = patient.id
                    slots[p] = await _slots(client, p, first_day, per_practice)
                await asyncio.sleep(0.5)  # every stream is open
                latencies = []
                for n in range(bookings):
                    p = ids[n % practices]
                    slot = slots[p][n // practices]
                    began = time.perf_counter()
                    request = SlotRequest("kontrolle", slot.column_id, slot.start, patients[p])
                    booked = await client.book_appointment(p, request, metadata=partner)
                    name = f"practices/{p}/appointments/{booked.id}"
                    future = arrivals.setdefault(name, asyncio.get_running_loop().create_future())
                    arrived = await asyncio.wait_for(future, 10)
                    latencies.append((arrived - began) * 1000)
                for stream in streams:
                    stream.cancel()
                await asyncio.gather(*watchers, return_exceptions=True)
        finally:
            await gateway.stop(0)
            if store.startswith("postgres"):
                with psycopg.connect(store, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    median = statistics.median(latencies)
    p99 = statistics.quantiles(latencies, n=100)[-1]
    return {
        "store": "postgresql" if store.startswith("postgres") else "sqlite",
        "practices_watching": practices,
        "rows": [
            {
                "name": "booking_to_inbox_stream",
                "median_ms": round(median, 2),
                "p99_ms": round(p99, 2),
                "runs": len(latencies),
                "target_median_ms": TARGET_MEDIAN_MS,
                "target_p99_ms": TARGET_P99_MS,
                "meets_target": median <= TARGET_MEDIAN_MS and p99 <= TARGET_P99_MS,
            }
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--practices", type=int, default=100)
    parser.add_argument("--bookings", type=int, default=200)
    parser.add_argument("--store", default="sqlite")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = asyncio.run(run(args.practices, args.bookings, args.store))
    print(f"store: {result['store']}, {result['practices_watching']} practices watching their inbox")
    for row in result["rows"]:
        met = "yes" if row["meets_target"] else "NO"
        print(
            f"{row['name']}: median {row['median_ms']} ms (target {row['target_median_ms']}),"
            f" p99 {row['p99_ms']} ms (target {row['target_p99_ms']}), {row['runs']} bookings; meets target: {met}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
