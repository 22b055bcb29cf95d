"""The demo practice: a small dental practice with realistic, deterministic calendar data.

Everything is placed relative to an anchor date (by default the day the database is created) so
the demo always shows a future to book in. The same anchor and seed always give the same data,
which the tests rely on.
"""

from __future__ import annotations

import random
import sqlite3
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = ["DEMO_TIME_ZONE", "seed_demo"]

DEMO_TIME_ZONE = "Europe/Berlin"
DEMO_WEEKS = 12

_PRACTITIONERS = [("berg", "Dr. Anna Berg"), ("weber", "Dr. Jonas Weber")]
_ROOMS = [
    ("zimmer-1", "Behandlungszimmer 1"),
    ("zimmer-2", "Behandlungszimmer 2"),
    ("prophylaxe", "Prophylaxe"),
]
_COLUMNS = [
    ("berg", "Dr. Anna Berg", "practitioner", "berg", "zimmer-1"),
    ("weber", "Dr. Jonas Weber", "practitioner", "weber", "zimmer-2"),
    ("prophylaxe", "Prophylaxe", "room", None, "prophylaxe"),
]
_MORNING, _AFTERNOON = ("08:00", "12:00"), ("13:00", "18:00")
_HOURS = {
    # Mon-Thu full days, short Friday.
    "berg": {
        1: [_MORNING, _AFTERNOON],
        2: [_MORNING, _AFTERNOON],
        3: [_MORNING, _AFTERNOON],
        4: [_MORNING, _AFTERNOON],
        5: [("08:00", "13:00")],
    },
    # Off on Wednesday afternoons.
    "weber": {
        1: [_MORNING, ("13:00", "17:00")],
        2: [_MORNING, ("13:00", "17:00")],
        3: [_MORNING],
        4: [_MORNING, ("13:00", "17:00")],
        5: [_MORNING, ("13:00", "17:00")],
    },
    "prophylaxe": {d: [("08:00", "16:00")] for d in range(1, 6)},
}
_GROUPS = [("untersuchung", "Untersuchung"), ("akut", "Akut"), ("prophylaxe", "Prophylaxe")]
# id, name, minutes, visit kind, group, columns
_TYPES = [
    ("kontrolle", "Kontrolluntersuchung", 20, "follow_up", "untersuchung", ["berg", "weber"]),
    ("erstberatung", "Erstberatung", 30, "first", "untersuchung", ["berg", "weber"]),
    ("schmerz", "Schmerzsprechstunde", 15, "any", "akut", ["berg", "weber"]),
    ("pzr", "Professionelle Zahnreinigung", 60, "any", "prophylaxe", ["prophylaxe"]),
]
# Fixed-date German public holidays (nationwide); movable feasts are left to real PVS data.
_HOLIDAYS = [
    ((1, 1), "Neujahr"),
    ((5, 1), "Tag der Arbeit"),
    ((10, 3), "Tag der Deutschen Einheit"),
    ((12, 25), "1. Weihnachtstag"),
    ((12, 26), "2. Weihnachtstag"),
]
# Fictional patients; consents per partner are set by tests and later issues.
_PATIENTS = [
    ("p-1001", "Erika", "Mustermann", "1964-08-12"),
    ("p-1002", "Max", "Mustermann", "1962-03-01"),
    ("p-1003", "Jürgen", "Müller-Lüdenscheidt", "1975-11-30"),
    ("p-1004", "Sophie", "von Arnim", "1990-02-14"),
    ("p-1005", "Ömer", "Yılmaz", "1988-07-07"),  # noqa: RUF001 - Turkish dotless i, on purpose
]


def seed_demo(
    conn: sqlite3.Connection,
    anchor: date,
    display_name: str = "Zahnarztpraxis Dr. Berg & Kollegen",
    time_zone: str = DEMO_TIME_ZONE,
    seed: int = 42,
) -> None:
    """Fill an empty database with the demo practice."""
    tz = ZoneInfo(time_zone)
    rng = random.Random(seed)
    conn.execute("INSERT INTO practice VALUES (1, ?, ?)", (display_name, time_zone))
    conn.executemany("INSERT INTO practitioners VALUES (?, ?)", _PRACTITIONERS)
    conn.executemany("INSERT INTO rooms VALUES (?, ?)", _ROOMS)
    conn.executemany(
        "INSERT INTO columns VALUES (?, ?, ?, ?, ?, ?)",
        [(cid, pos, name, kind, prac, room) for pos, (cid, name, kind, prac, room) in enumerate(_COLUMNS)],
    )
    for column_id, days in _HOURS.items():
        for weekday, spans in days.items():
            conn.executemany(
                "INSERT INTO weekly_hours VALUES (?, ?, ?, ?)", [(column_id, weekday, s, e) for s, e in spans]
            )
    conn.executemany("INSERT INTO appointment_type_groups VALUES (?, ?)", _GROUPS)
    for pos, (tid, name, minutes, visit, group, columns) in enumerate(_TYPES):
        conn.execute(
            "INSERT INTO appointment_types (id, position, display_name, duration_minutes, visit_kind,"
            " group_id, min_lead_minutes, max_horizon_days) VALUES (?, ?, ?, ?, ?, ?, 120, 365)",
            (tid, pos, name, minutes, visit, group),
        )
        conn.executemany("INSERT INTO appointment_type_columns VALUES (?, ?)", [(tid, c) for c in columns])
    # Pain patients are seen first thing every weekday morning, in every column.
    conn.execute("INSERT INTO booking_areas VALUES ('schmerz-morgens', 'Schmerzsprechstunde', NULL, NULL, NULL)")
    conn.executemany(
        "INSERT INTO booking_area_spans VALUES ('schmerz-morgens', ?, '08:00', '08:30')",
        [(d,) for d in range(1, 6)],
    )
    conn.execute("INSERT INTO booking_area_types VALUES ('schmerz-morgens', 'schmerz')")
    for year in (anchor.year, anchor.year + 1, anchor.year + 2):
        conn.executemany(
            "INSERT INTO closed_days VALUES (?, NULL, ?)",
            [(date(year, m, d).isoformat(), label) for (m, d), label in _HOLIDAYS],
        )
    # Dr. Weber's holiday and Dr. Berg's training day.
    _absence(conn, tz, "weber", anchor + timedelta(days=21), anchor + timedelta(days=30), "Urlaub")
    _absence(conn, tz, "berg", anchor + timedelta(days=9), anchor + timedelta(days=9), "Fortbildung")
    # Dr. Berg works a Saturday morning shift in the fifth week.
    saturday = anchor + timedelta(days=(5 - anchor.weekday()) % 7 + 28)
    shift_id = conn.execute(
        "INSERT INTO shifts (column_id, valid_from, valid_until) VALUES ('berg', ?, ?)",
        (saturday.isoformat(), saturday.isoformat()),
    ).lastrowid
    conn.execute("INSERT INTO shift_spans VALUES (?, 6, '09:00', '12:00')", (shift_id,))
    # A team meeting reserves both practitioners' columns across two days.
    meeting = anchor + timedelta(days=14)
    for column_id in ("berg", "weber"):
        conn.execute(
            "INSERT INTO calendar_entries (column_id, start_utc, end_utc, kind) VALUES (?, ?, ?, 'reservation')",
            (column_id, _utc(tz, meeting, time(16, 0)), _utc(tz, meeting + timedelta(days=1), time(10, 0))),
        )
    for pid, given, family, birth in _PATIENTS:
        conn.execute(
            "INSERT INTO patients (id, given_name, family_name, birth_date) VALUES (?, ?, ?, ?)",
            (pid, given, family, birth),
        )
    _appointments(conn, tz, anchor, rng)


def _utc(tz: ZoneInfo, day: date, clock: time) -> int:
    # Demo hours never fall into a daylight-saving gap, so the plain zone conversion is exact here.
    return int(datetime.combine(day, clock, tzinfo=tz).timestamp())


def _absence(conn: sqlite3.Connection, tz: ZoneInfo, column_id: str, first: date, last: date, reason: str) -> None:
    conn.execute(
        "INSERT INTO absences (column_id, start_utc, end_utc, reason) VALUES (?, ?, ?, ?)",
        (column_id, _utc(tz, first, time(0, 0)), _utc(tz, last + timedelta(days=1), time(0, 0)), reason),
    )


def _appointments(conn: sqlite3.Connection, tz: ZoneInfo, anchor: date, rng: random.Random) -> None:
    """Fill about half of each working span: runs of appointments with free gaps of 30-60 minutes."""
    patients = [p[0] for p in _PATIENTS]
    types_by_column: dict[str, list[tuple[str, int]]] = {}
    for tid, _name, minutes, _visit, _group, columns in _TYPES:
        for column_id in columns:
            types_by_column.setdefault(column_id, []).append((tid, minutes))
    rows = []
    for offset in range(DEMO_WEEKS * 7):
        day = anchor + timedelta(days=offset)
        for column_id, days in _HOURS.items():
            for start_text, end_text in days.get(day.isoweekday(), []):
                cursor = _minutes(start_text)
                end = _minutes(end_text)
                while cursor < end:
                    type_id, length = rng.choice(types_by_column[column_id])
                    if cursor + length <= end and rng.random() < 0.55:
                        start = _utc(tz, day, time(cursor // 60, cursor % 60))
                        rows.append((column_id, start, start + length * 60, type_id, rng.choice(patients)))
                        cursor += length
                    else:
                        cursor += rng.choice((30, 60))
    conn.executemany(
        "INSERT INTO calendar_entries (column_id, start_utc, end_utc, kind, appointment_type_id, patient_id)"
        " VALUES (?, ?, ?, 'appointment', ?, ?)",
        rows,
    )


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)
