"""Find-or-create decision against a practice of 100,000 patients.

    python benchmarks/bench_patients.py [--runs 2000] [--json PATH]

The practice has a realistic German name distribution (frequent surnames such as Müller and
Schmidt far more often than rare ones, Zipf-like), birth dates over 90 years, contacts for most
patients, and deliberate namesakes (same name and birth date: twins, duplicates of real life).
Measured: the decision (normalise the booking, look up candidates by match key, decide), without
the PVS write; and, for information, the whole find-or-create including the write. Target: median
decision at most 1 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from otv_sdk.matching import decide, match_key, normalize_query
from otv_sdk.models import Contact, ContactKind
from otv_sdk.ports import CallContext, PatientQuery
from otv_sdk.reference import create_adapter
from otv_sdk.reference.database import Database
from otv_sdk.reference.patients import ReferencePatients, candidates

PATIENTS = 100_000
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


def build(path: Path, seed: int = 100_000) -> list[tuple[str, str, date, tuple[Contact, ...]]]:
    """Write the practice; return the patients as (given, family, birth, contacts)."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(len(SURNAMES))]
    people: list[tuple[str, str, date, tuple[Contact, ...]]] = []
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
            rows.append((pid, given, family, birth.isoformat(), match_key(family, birth)))
            contacts += [(pid, c.kind.value, c.value) for c in items]
            roll = rng.random()
            if roll < 0.05:
                consents.append((pid, "alpha", "granted" if roll < 0.03 else "denied"))
        conn.executemany(
            "INSERT INTO patients (id, given_name, family_name, birth_date, match_key) VALUES (?, ?, ?, ?, ?)", rows
        )
        conn.executemany("INSERT INTO patient_contacts VALUES (?, ?, ?)", contacts)
        conn.executemany("INSERT INTO consents (patient_id, partner_id, state) VALUES (?, ?, ?)", consents)

    database.run_sync(fill)
    database.close()
    return people


def _median(samples: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(samples), 4),
        "p99_ms": round(statistics.quantiles(samples, n=100)[-1], 4),
    }


def run(runs: int) -> dict[str, Any]:
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "patients.sqlite"
        started = time.perf_counter()
        people = build(path)
        built_s = time.perf_counter() - started
        adapter = create_adapter("bench", {"database": str(path), "demo": False})
        lookup = adapter.patient_lookup
        assert isinstance(lookup, ReferencePatients)
        database: Database = lookup._db  # the benchmark reads the same database the adapter writes
        queries = []
        for _ in range(runs):
            if rng.random() < 0.7:  # an existing patient, spelled as partners send it
                given, family, birth, items = rng.choice(people)
                queries.append(PatientQuery(given.upper(), family, birth, items[:1]))
            else:
                queries.append(PatientQuery(rng.choice(GIVEN), rng.choice(SURNAMES), _birth(rng), ()))
        decisions: list[float] = []
        outcomes = {"matched": 0, "created": 0}

        def decide_all(conn: Any) -> None:
            for query in queries:
                began = time.perf_counter()
                normalized = normalize_query(query)
                chosen = decide(normalized, candidates(conn, normalized, "alpha"))
                decisions.append((time.perf_counter() - began) * 1000)
                outcomes["matched" if chosen is not None else "created"] += 1

        database.run_sync(decide_all)
        whole: list[float] = []

        async def find_all() -> None:
            for index, query in enumerate(queries[: min(runs, 500)]):
                ctx = CallContext("alpha", request_id=f"bench-{index}")
                began = time.perf_counter()
                await lookup.find_or_create_patient(ctx, query)
                whole.append((time.perf_counter() - began) * 1000)

        asyncio.run(find_all())
        asyncio.run(adapter.aclose())
    decision = _median(decisions)
    return {
        "patients": PATIENTS,
        "built_s": round(built_s, 1),
        "decision": {**decision, "runs": runs, "target_ms": 1.0, "meets_target": decision["median_ms"] <= 1.0},
        "decision_outcomes": outcomes,
        "find_or_create_with_write": {**_median(whole), "runs": len(whole)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = run(args.runs)
    decision, whole = result["decision"], result["find_or_create_with_write"]
    print(f"practice: {result['patients']} patients, built in {result['built_s']} s")
    print(f"{'benchmark':34} {'median ms':>10} {'p99 ms':>10} {'target':>8}  met")
    met = "yes" if decision["meets_target"] else "NO"
    print(f"{'find_or_create_decision':34} {decision['median_ms']:>10.3f} {decision['p99_ms']:>10.3f} {1.0:>8}  {met}")
    print(f"{'find_or_create_with_pvs_write':34} {whole['median_ms']:>10.3f} {whole['p99_ms']:>10.3f} {'-':>8}")
    print(f"decisions: {result['decision_outcomes']}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
