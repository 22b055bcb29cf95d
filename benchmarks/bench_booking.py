"""Hold + confirm through the gateway: latency (median, p99) and throughput.

    python benchmarks/bench_booking.py [--bookings 300] [--concurrency 8] [--store sqlite|postgresql://...]

A reference practice in a SQLite file, a gateway on loopback with its state store (a SQLite file
by default, or the PostgreSQL URL given), and a partner client. Each booking is two calls: HoldSlot
then ConfirmHold (automatic mode: the appointment is written to the PVS). First sequentially
(latency), then with N concurrent clients booking different slots (throughput).
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

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from patient_env import as_partner, header_identity

from gateway.app import Gateway
from gateway.config import parse_config
from otv_sdk.client import PartnerClient
from otv_sdk.models import Interval, Slot
from otv_sdk.ports import PageRequest, PatientQuery, SlotQuery, SlotRequest

SECRET = "5e" * 48


async def _disjoint_slots(client: PartnerClient, first_day: date, needed: int) -> list[Slot]:
    start = datetime.combine(first_day, datetime.min.time(), UTC)
    window = Interval(start, start + timedelta(days=80))
    chosen: list[Slot] = []
    last_end: dict[str, datetime] = {}
    token = ""
    while len(chosen) < needed:
        page = await client.find_slots(
            "demo", SlotQuery("kontrolle", window, (), PageRequest(1000, token)), metadata=as_partner("bench")
        )
        for slot in page.items:
            if slot.start >= last_end.get(slot.column_id, start):
                chosen.append(slot)
                last_end[slot.column_id] = slot.end
        token = page.next_page_token
        if not token:
            break
    if len(chosen) < needed:
        raise SystemExit(f"only {len(chosen)} disjoint slots in the demo practice; ask for fewer bookings")
    return chosen[:needed]


async def run(bookings: int, concurrency: int, store: str) -> dict[str, Any]:
    first_day = date.today() + timedelta(days=14)
    schema = f"otv_bench_{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory() as folder:
        if store.startswith("postgres"):  # a schema of its own, dropped afterwards
            separator = "&" if "?" in store else "?"
            state = f"{store}{separator}options=-csearch_path%3D{schema}"
            with psycopg.connect(store, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{schema}"')
        else:
            state = f"sqlite:///{Path(folder) / 'state.sqlite'}"
        settings = {"database": str(Path(folder) / "pvs.sqlite"), "demo": True, "demo_anchor": first_day.isoformat()}
        config = parse_config(
            {
                "gateway": {"listen": "127.0.0.1:0", "secret_key": SECRET, "state_store": state},
                "practices": {"demo": {"adapter": {"plugin": "reference", "settings": settings}}},
            }
        )
        gateway = await Gateway.start(config, identify=header_identity)
        try:
            async with PartnerClient.connect(gateway.address) as client:
                partner = as_partner("bench")
                patient, _ = await client.find_or_create_patient(
                    "demo", PatientQuery("Bench", "Mark", date(1980, 1, 1)), metadata=partner
                )
                slots = await _disjoint_slots(client, first_day, bookings * 2)

                async def book(slot: Slot) -> float:
                    began = time.perf_counter()
                    request = SlotRequest("kontrolle", slot.column_id, slot.start, patient.id)
                    hold = await client.hold_slot("demo", request, metadata=partner)
                    await client.confirm_hold("demo", hold.id, metadata=partner)
                    return (time.perf_counter() - began) * 1000

                latencies = [await book(slot) for slot in slots[:bookings]]
                queue = list(slots[bookings:])

                async def worker() -> int:
                    done = 0
                    while queue:
                        await book(queue.pop())
                        done += 1
                    return done

                began = time.perf_counter()
                counts = await asyncio.gather(*(worker() for _ in range(concurrency)))
                elapsed = time.perf_counter() - began
        finally:
            await gateway.stop(0)
            if store.startswith("postgres"):
                with psycopg.connect(store, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    return {
        "store": "postgresql" if store.startswith("postgres") else "sqlite",
        "hold_confirm_latency_ms": {
            "median": round(statistics.median(latencies), 2),
            "p99": round(statistics.quantiles(latencies, n=100)[-1], 2),
            "runs": len(latencies),
        },
        "hold_confirm_throughput_per_s": round(sum(counts) / elapsed, 1),
        "concurrency": concurrency,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bookings", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--store", default="sqlite")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = asyncio.run(run(args.bookings, args.concurrency, args.store))
    latency = result["hold_confirm_latency_ms"]
    print(f"store: {result['store']}")
    print(f"hold+confirm latency: median {latency['median']} ms, p99 {latency['p99']} ms ({latency['runs']} bookings)")
    throughput = result["hold_confirm_throughput_per_s"]
    print(f"hold+confirm throughput: {throughput}/s with {args.concurrency} concurrent clients")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
