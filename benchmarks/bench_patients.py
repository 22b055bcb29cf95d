"""Find-or-create against a practice of 100,000 patients: the decision, and through the gateway.

    python benchmarks/bench_patients.py [--runs 2000] [--gateway-runs 1000] [--json PATH]

The practice has a realistic German name distribution (frequent surnames such as Müller and
Schmidt far more often than rare ones, Zipf-like), birth dates over 90 years, contacts for most
patients, and deliberate namesakes (same name and birth date: twins, duplicates of real life).
Bookings are 70% existing patients, spelled as partners send them, and 30% new people.

Measured, each as the median (and p99):
  find_or_create_decision        the gateway's `PatientMatcher` in process over the reference
                                 adapter's `PatientDataPort` (normalise, read the patients born on
                                 the date, decide, shape the answer), with the PVS writes (creating
                                 a patient, a note line) answered in memory: the decision without
                                 the write; --runs bookings. Target: at most 1 ms.
  find_or_create_with_pvs_write  the same with the writes made (at most 500 bookings), for
                                 information.
  grpc_find_or_create_remote     FindOrCreatePatient end to end through a gateway over loopback,
                                 a partner call authenticated with otv-session-v1 (the partner
                                 client's default) with its own request_id, for the practice
                                 served by `serve_adapters` (PracticeDataService) and configured as
                                 a remote; --gateway-runs bookings after a warm-up. Target: at most
                                 5 ms. The adapter server runs in this process, as in the tests.
  grpc_find_or_create_remote_own_process
                                 the same with the adapter server in a process of its own, as a
                                 practice's PVS runs on a machine of its own: the gateway's loop no
                                 longer also runs the PVS's side of each call. For information.
The machine's 1-minute load average before and after the run is part of the result.
Each measurement gets bookings of its own (the same mix), so one's creations do not turn the next
one's new people into matches. Nothing is asserted here; the table says whether each target is met.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import grpc
from signed_partner import NO_PARTNER_LIMITS, register

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.patient_matching import PatientMatcher
from otv_sdk.adapter_server import serve_adapters
from otv_sdk.client import PartnerClient
from otv_sdk.models import Contact, ContactKind, NewPatient, PatientRecord
from otv_sdk.ports import CallContext, PatientDataPort, PatientQuery
from otv_sdk.reference import create_adapter
from otv_sdk.reference.database import Database

PATIENTS = 100_000
PARTNER = "alpha"  # the partner the practice's consent records name (5% of patients decided)
TARGETS_MS = {"find_or_create_decision": 1.0, "grpc_find_or_create_remote": 5.0}

SURNAMES = [
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
    "Schäfer",
    "Koch",
    "Bauer",
    "Richter",
    "Klein",
    "Wolf",
    "Schröder",
    "Neumann",
    "Schwarz",
    "Zimmermann",
    "Braun",
    "Krüger",
    "Hofmann",
    "Hartmann",
    "Lange",
    "Schmitt",
    "Werner",
    "Schmitz",
    "Krause",
    "Meier",
    "Lehmann",
    "Schmid",
    "Schulze",
    "Maier",
    "Köhler",
    "Herrmann",
    "König",
    "Walter",
    "Mayer",
    "Huber",
    "Kaiser",
    "Fuchs",
    "Peters",
    "Lang",
    "Scholz",
    "Möller",
    "Weiß",
    "Jung",
    "Hahn",
    "Schubert",
    "Vogel",
    "Friedrich",
    "Keller",
    "Günther",
    "Frank",
    "Berger",
    "Winkler",
    "Roth",
    "Beck",
    "Lorenz",
    "Baumann",
    "Franke",
    "Albrecht",
    "Schuster",
    "Simon",
    "Ludwig",
    "Böhm",
    "Winter",
    "Kraus",
    "Martin",
    "Schumacher",
    "Krämer",
    "Vogt",
    "Stein",
    "Jäger",
    "Otto",
    "Sommer",
    "Groß",
    "Seidel",
    "Heinrich",
    "Brandt",
    "Haas",
    "Schreiber",
    "Graf",
    "Schulte",
    "Dietrich",
    "Ziegler",
    "Kuhn",
    "Kühn",
    "Pohl",
    "Engel",
    "Horn",
    "Busch",
    "Bergmann",
    "Thomas",
    "Voigt",
    "Sauer",
    "Arnold",
    "Wolff",
    "Pfeiffer",
    "Yılmaz",
    "Kaya",
    "Nowak",
    "Kowalski",
    "Popescu",
    "Nguyen",
]
GIVEN = [
    "Maria",
    "Ursula",
    "Monika",
    "Petra",
    "Elisabeth",
    "Sabine",
    "Renate",
    "Helga",
    "Karin",
    "Brigitte",
    "Ingrid",
    "Erika",
    "Andrea",
    "Gisela",
    "Claudia",
    "Susanne",
    "Gabriele",
    "Christa",
    "Christine",
    "Hildegard",
    "Anna",
    "Emma",
    "Mia",
    "Sophie",
    "Lena",
    "Leonie",
    "Hannah",
    "Lea",
    "Julia",
    "Laura",
    "Peter",
    "Michael",
    "Thomas",
    "Andreas",
    "Wolfgang",
    "Klaus",
    "Jürgen",
    "Günter",
    "Stefan",
    "Christian",
    "Uwe",
    "Werner",
    "Horst",
    "Frank",
    "Dieter",
    "Manfred",
    "Gerhard",
    "Hans",
    "Bernd",
    "Torsten",
    "Lukas",
    "Leon",
    "Finn",
    "Jonas",
    "Paul",
    "Ben",
    "Elias",
    "Noah",
    "Felix",
    "Max",
    "Mehmet",
    "Ömer",
]


def _birth(rng: random.Random) -> date:
    return date(1930, 1, 1) + timedelta(days=rng.randrange(90 * 365))


def _contacts(rng: random.Random, index: int) -> tuple[Contact, ...]:
    items = []
    if rng.random() < 0.8:
        items.append(Contact(ContactKind.MOBILE, f"0151 {10_000_000 + index}"))
    if rng.random() < 0.5:
        items.append(Contact(ContactKind.EMAIL, f"p{index}@example.org"))
    return tuple(items)


Person = tuple[str, str, date, tuple[Contact, ...]]


def build(path: Path, seed: int = 100_000) -> list[Person]:
    """Write the practice; return the patients as (given, family, birth, contacts)."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(len(SURNAMES))]
    people: list[Person] = []
    while len(people) < PATIENTS:
        if people and rng.random() < 0.02:  # a namesake of someone already there
            given, family, birth, _ = rng.choice(people)
        else:
            given, family, birth = rng.choice(GIVEN), rng.choices(SURNAMES, weights)[0], _birth(rng)
        people.append((given, family, birth, _contacts(rng, len(people))))
    database = Database(path)

    def fill(conn: Any) -> None:
        rows, contacts, consents = [], [], []
        for index, (given, family, birth, items) in enumerate(people):
            pid = f"p{index:06d}"
            rows.append((pid, given, family, birth.isoformat()))
            contacts += [(pid, c.kind.value, c.value) for c in items]
            roll = rng.random()
            if roll < 0.05:
                consents.append((pid, PARTNER, "granted" if roll < 0.03 else "denied"))
        conn.executemany("INSERT INTO patients (id, given_name, family_name, birth_date) VALUES (?, ?, ?, ?)", rows)
        conn.executemany("INSERT INTO patient_contacts VALUES (?, ?, ?)", contacts)
        conn.executemany("INSERT INTO consents (patient_id, partner_id, state) VALUES (?, ?, ?)", consents)

    database.run_sync(fill)
    database.close()
    return people


def bookings(rng: random.Random, people: list[Person], count: int) -> list[PatientQuery]:
    queries = []
    for _ in range(count):
        if rng.random() < 0.7:  # an existing patient, spelled as partners send it
            given, family, birth, items = rng.choice(people)
            queries.append(PatientQuery(given.upper(), family, birth, items[:1]))
        else:
            queries.append(PatientQuery(rng.choice(GIVEN), rng.choice(SURNAMES), _birth(rng), ()))
    return queries


class ReadOnlyPatients(PatientDataPort):
    """The practice's patients read as they are; writes answered in memory and never made."""

    def __init__(self, inner: PatientDataPort) -> None:
        self._inner = inner

    async def list_patients_born_on(self, ctx: CallContext, birth_date: date) -> list[PatientRecord]:
        return await self._inner.list_patients_born_on(ctx, birth_date)

    async def create_patient(self, ctx: CallContext, patient: NewPatient, request_id: str) -> PatientRecord:
        return PatientRecord(
            f"n-{request_id[:12]}",
            patient.given_name,
            patient.family_name,
            patient.birth_date,
            patient.contacts,
            created_online_by=ctx.partner_id,
        )

    async def append_patient_note(self, ctx: CallContext, patient_id: str, line: str, request_id: str) -> None:
        return None

    async def list_consented_patients(self, ctx: CallContext, after: str, limit: int) -> list[PatientRecord]:
        return await self._inner.list_consented_patients(ctx, after, limit)


def _row(name: str, samples: list[float], outcomes: dict[str, int]) -> dict[str, Any]:
    median = statistics.median(samples)
    target = TARGETS_MS.get(name)
    return {
        "name": name,
        "median_ms": round(median, 4),
        "p99_ms": round(statistics.quantiles(samples, n=100)[-1], 4),
        "runs": len(samples),
        "target_ms": target,
        "meets_target": None if target is None else median <= target,
        "outcomes": outcomes,
    }


async def in_process(name: str, data: PatientDataPort, queries: list[PatientQuery]) -> dict[str, Any]:
    """PatientMatcher over data, as the gateway runs it (no state store: no partner request ids)."""
    matcher = PatientMatcher("bench", data)
    samples: list[float] = []
    outcomes = {"matched": 0, "created": 0}
    for query in queries:
        ctx = CallContext(PARTNER)
        began = time.perf_counter()
        _, outcome = await matcher.find_or_create_patient(ctx, query)
        samples.append((time.perf_counter() - began) * 1000)
        outcomes[outcome.value] += 1
    return _row(name, samples, outcomes)


async def serve_in_process(path: Path) -> tuple[str, Callable[[], Awaitable[None]]]:
    """The practice's adapter server on this event loop: its address and how to stop it."""
    server = await serve_adapters({"bench": create_adapter("bench", {"database": str(path), "demo": False})})
    return f"127.0.0.1:{server.port}", lambda: server.stop(0)


async def serve_own_process(path: Path) -> tuple[str, Callable[[], Awaitable[None]]]:
    """The practice's adapter server in a process of its own (this script with --serve-adapter)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve-adapter", str(path), stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None

    async def stop() -> None:
        if process.returncode is None:
            process.terminate()
        await process.wait()

    try:
        line = await asyncio.wait_for(process.stdout.readline(), 30)
    except TimeoutError:
        line = b""
    if not line.strip().isdigit():
        await stop()
        raise RuntimeError("the adapter server process did not start (its errors are above)")
    return f"127.0.0.1:{int(line)}", stop


async def serve_adapter_forever(path: Path) -> None:
    """Serve the practice until terminated, after printing the port (--serve-adapter)."""
    server = await serve_adapters({"bench": create_adapter("bench", {"database": str(path), "demo": False})})
    print(server.port, flush=True)
    await server.wait_for_termination()


async def through_gateway(
    path: Path,
    queries: list[PatientQuery],
    warm_up: list[PatientQuery],
    name: str = "grpc_find_or_create_remote",
    serve: Callable[[Path], Awaitable[tuple[str, Callable[[], Awaitable[None]]]]] = serve_in_process,
) -> dict[str, Any]:
    """FindOrCreatePatient calls over an otv-session-v1 session, each with its own request_id, to a remote practice."""
    address, stop_server = await serve(path)
    config = parse_config(
        {
            "gateway": {
                "listen": "127.0.0.1:0",
                "state_store": "sqlite://:memory:",
                "secret_key": secrets.token_hex(32),
                "rate_limit": NO_PARTNER_LIMITS,
            },
            "practices": {"bench": {"adapter": {"remote": {"address": address, "practice": "bench"}}}},
        }
    )
    gateway = await Gateway.start(config)
    samples: list[float] = []
    outcomes = {"matched": 0, "created": 0}
    try:
        # Authenticated as partners are by default: one signed OpenSession, then an HMAC per call.
        async with PartnerClient(grpc.aio.insecure_channel(gateway.address), register(gateway, PARTNER)) as client:
            for index, query in enumerate(warm_up):
                await client.find_or_create_patient("bench", query, request_id=f"warm-{index}", timeout=10)
            for index, query in enumerate(queries):
                began = time.perf_counter()
                _, outcome = await client.find_or_create_patient("bench", query, request_id=f"grpc-{index}", timeout=10)
                samples.append((time.perf_counter() - began) * 1000)
                outcomes[outcome.value] += 1
    finally:
        await gateway.stop(0)
        await stop_server()
    return _row(name, samples, outcomes)


async def run(runs: int, gateway_runs: int) -> dict[str, Any]:
    rng = random.Random(7)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "patients.sqlite"
        started = time.perf_counter()
        people = build(path)
        built_s = time.perf_counter() - started
        adapter = create_adapter("bench", {"database": str(path), "demo": False})
        assert adapter.patients is not None
        rows = [
            await in_process(
                "find_or_create_decision", ReadOnlyPatients(adapter.patients), bookings(rng, people, runs)
            ),
            await in_process("find_or_create_with_pvs_write", adapter.patients, bookings(rng, people, min(runs, 500))),
        ]
        await adapter.aclose()
        warm_up = bookings(rng, people, 20)
        rows.append(await through_gateway(path, bookings(rng, people, gateway_runs), warm_up))
        rows.append(
            await through_gateway(
                path,
                bookings(rng, people, gateway_runs),
                bookings(rng, people, len(warm_up)),
                "grpc_find_or_create_remote_own_process",
                serve_own_process,
            )
        )
    return {
        "patients": PATIENTS,
        "built_s": round(built_s, 1),
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        **{row["name"]: row for row in rows},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2000, help="bookings decided in process")
    parser.add_argument("--gateway-runs", type=int, default=1000, help="bookings through the gateway")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--serve-adapter", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_adapter is not None:
        asyncio.run(serve_adapter_forever(args.serve_adapter))
        return
    result = asyncio.run(run(args.runs, args.gateway_runs))
    before, after = result["load_average_1m"]
    print(f"practice: {result['patients']} patients, built in {result['built_s']} s; load average {before} -> {after}")
    print(f"{'benchmark':38} {'median ms':>10} {'p99 ms':>10} {'target':>8}  {'met':>4}  outcomes")
    for name in (
        "find_or_create_decision",
        "find_or_create_with_pvs_write",
        "grpc_find_or_create_remote",
        "grpc_find_or_create_remote_own_process",
    ):
        row = result[name]
        met = {True: "yes", False: "NO", None: "-"}[row["meets_target"]]
        target = "-" if row["target_ms"] is None else row["target_ms"]
        outcomes = ", ".join(f"{k}={v}" for k, v in row["outcomes"].items())
        print(f"{name:38} {row['median_ms']:>10.3f} {row['p99_ms']:>10.3f} {target:>8}  {met:>4}  {outcomes}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
