"""The availability benchmark's practice, generated deterministically into a reference-adapter database.

20 columns over 730 days from a given Monday: Monday to Friday 08:00-12:00 and 13:00-18:00, short
Fridays (08:00-13:00), one column off on Wednesday afternoons; about 30,000 appointments of 10-90
minutes (a few overlapping, as double appointments do); 200 absences of 1-10 days; 10 appointment
types; booking areas on several weekdays. Same seed, same practice.
"""

from __future__ import annotations

import random
import sqlite3
from datetime import date, time, timedelta
from pathlib import Path

from otv_rules.wallclock import to_utc, zone
from otv_sdk.reference.database import Database

COLUMNS = [f"c{i:02d}" for i in range(1, 21)]
DAYS = 730
APPOINTMENTS = 30_000
ABSENCES = 200
TIME_ZONE = "Europe/Berlin"
# id, minutes, allowed columns
TYPES = [
    ("kontrolle", 20, COLUMNS),
    ("beratung", 30, COLUMNS[:15]),
    ("akut", 15, COLUMNS),
    ("fuellung", 45, COLUMNS[:12]),
    ("wurzel", 90, COLUMNS[:6]),
    ("pzr", 60, COLUMNS[15:]),
    ("kinder", 30, COLUMNS[5:12]),
    ("implantat", 90, COLUMNS[:4]),
    ("roentgen", 10, COLUMNS),
    ("nachsorge", 20, COLUMNS[3:18]),
]


def _hours(column: str, weekday: int) -> list[tuple[str, str]]:
    if weekday == 5:
        return [("08:00", "13:00")]
    if weekday == 3 and column == "c05":
        return [("08:00", "12:00")]
    if weekday <= 4:
        return [("08:00", "12:00"), ("13:00", "18:00")]
    return []


def write_scenario(path: Path, first_day: date, seed: int = 2027) -> None:
    """Create (or replace) the database at path with the benchmark practice."""
    if path.exists():
        path.unlink()
    database = Database(path)
    database.run_sync(lambda conn: _fill(conn, first_day, random.Random(seed)))
    database.close()


def _fill(conn: sqlite3.Connection, first_day: date, rng: random.Random) -> None:
    tz = zone(TIME_ZONE)
    conn.execute("INSERT INTO practice VALUES (1, 'Benchmark-Praxis', ?)", (TIME_ZONE,))
    for position, column in enumerate(COLUMNS):
        conn.execute("INSERT INTO practitioners VALUES (?, ?)", (column, f"Behandler {column}"))
        conn.execute(
            "INSERT INTO columns VALUES (?, ?, ?, 'practitioner', ?, NULL)", (column, position, column, column)
        )
        for weekday in range(1, 6):
            for start, end in _hours(column, weekday):
                conn.execute("INSERT INTO weekly_hours VALUES (?, ?, ?, ?)", (column, weekday, start, end))
    for position, (type_id, minutes, columns) in enumerate(TYPES):
        conn.execute(
            "INSERT INTO appointment_types (id, position, display_name, duration_minutes, visit_kind)"
            " VALUES (?, ?, ?, ?, 'any')",
            (type_id, position, type_id, minutes),
        )
        conn.executemany("INSERT INTO appointment_type_columns VALUES (?, ?)", [(type_id, c) for c in columns])
    # Pain slots first thing on Monday, Wednesday and Friday; prophylaxe Tuesday afternoons.
    conn.execute("INSERT INTO booking_areas VALUES ('akut-morgens', 'Akut', NULL, NULL, NULL)")
    conn.executemany("INSERT INTO booking_area_spans VALUES ('akut-morgens', ?, '08:00', '09:00')", [(1,), (3,), (5,)])
    conn.execute("INSERT INTO booking_area_types VALUES ('akut-morgens', 'akut')")
    for column in COLUMNS[15:]:
        area = f"pzr-{column}"
        conn.execute("INSERT INTO booking_areas VALUES (?, 'PZR', ?, NULL, NULL)", (area, column))
        conn.execute("INSERT INTO booking_area_spans VALUES (?, 2, '14:00', '16:00')", (area,))
        conn.execute("INSERT INTO booking_area_types VALUES (?, 'pzr')", (area,))
    working_days = [
        first_day + timedelta(days=i) for i in range(DAYS) if (first_day + timedelta(days=i)).isoweekday() <= 5
    ]
    rows = []
    while len(rows) < APPOINTMENTS:
        column = rng.choice(COLUMNS)
        day = rng.choice(working_days)
        spans = _hours(column, day.isoweekday())
        start_text, end_text = rng.choice(spans)
        minutes = rng.choice([10, 15, 20, 30, 45, 60, 90])
        first = int(start_text[:2]) * 60
        last = int(end_text[:2]) * 60 - minutes
        if last < first:
            continue
        begin = first + rng.randrange(0, (last - first) // 5 + 1) * 5
        start = int(to_utc(day, time(begin // 60, begin % 60), tz).timestamp())
        rows.append((column, start, start + minutes * 60))
    conn.executemany(
        "INSERT INTO calendar_entries (column_id, start_utc, end_utc, kind) VALUES (?, ?, ?, 'appointment')", rows
    )
    for _ in range(ABSENCES):
        column = rng.choice(COLUMNS)
        start_day = first_day + timedelta(days=rng.randrange(DAYS))
        length = rng.randint(1, 10)
        conn.execute(
            "INSERT INTO absences (column_id, start_utc, end_utc, reason) VALUES (?, ?, ?, 'Urlaub')",
            (
                column,
                int(to_utc(start_day, time(0), tz).timestamp()),
                int(to_utc(start_day + timedelta(days=length), time(0), tz).timestamp()),
            ),
        )
