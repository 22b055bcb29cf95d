"""Scenario data files: versioned practices, placed in time and made unique for each run.

A data file says *what* a practice looks like; this module decides *when*. Days are written
relative to three anchors so a file never goes stale and always contains both daylight-saving
switches: `A` is a Monday at least a week after the run, `S` the next spring-forward Sunday after
it, `F` the next fall-back Sunday. "A+3 08:00" is that day's wall-clock time in the practice's
zone. Placeholders (`{tag}`, `{mobile}`, `{email}`, ...) get fresh values per run, so names and
phone numbers never collide with an earlier run's data, and the suite can scan every response
for the patient values it planted.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from otv_sdk.models import (
    Absence,
    AppointmentType,
    AppointmentTypeGroup,
    BookingArea,
    Calendar,
    Column,
    ColumnKind,
    ConsentState,
    Contact,
    ContactKind,
    Interval,
    PracticeProfile,
    Practitioner,
    Room,
    VisitKind,
    WeeklySpan,
)
from otv_sdk.scenario import BirthDate, ClosedDay, EntryKind, Scenario, ScenarioEntry, ScenarioPatient, Shift

__all__ = ["Anchors", "PlacedScenario", "RunValues", "available_scenarios", "load_scenario", "place_scenario"]

_RELATIVE = re.compile(r"^(?P<anchor>[ASF])(?P<offset>[+-]\d+)(?: (?P<clock>\d\d:\d\d))?$")


@dataclass(frozen=True, slots=True)
class Anchors:
    monday: date  # A
    spring: date  # S: the day clocks go forward
    autumn: date  # F: the day clocks go back

    def day(self, text: str) -> date:
        match = _RELATIVE.match(text)
        if match is None or match["clock"] is not None:
            raise ValueError(f"{text!r} is not a relative day such as 'A+3'")
        return self._base(match["anchor"]) + timedelta(days=int(match["offset"]))

    def instant(self, text: str, tz: ZoneInfo) -> datetime:
        match = _RELATIVE.match(text)
        if match is None or match["clock"] is None:
            raise ValueError(f"{text!r} is not a relative time such as 'A+3 08:00'")
        day = self._base(match["anchor"]) + timedelta(days=int(match["offset"]))
        local = datetime.combine(day, time.fromisoformat(match["clock"]), tz)
        return local.astimezone(UTC)

    def _base(self, anchor: str) -> date:
        return {"A": self.monday, "S": self.spring, "F": self.autumn}[anchor]


def _switches(tz: ZoneInfo, after: date) -> tuple[date, date]:
    """The zone's next spring-forward and fall-back days after `after`, from its own rules."""
    spring: date | None = None
    autumn: date | None = None
    day = after
    previous = datetime.combine(day, time(12), tz).utcoffset()
    while spring is None or autumn is None:
        day += timedelta(days=1)
        offset = datetime.combine(day, time(12), tz).utcoffset()
        assert offset is not None
        assert previous is not None
        if offset > previous and spring is None:
            spring = day
        elif offset < previous and autumn is None:
            autumn = day
        previous = offset
        if day > after + timedelta(days=800):
            raise ValueError(f"time zone {tz.key} has no daylight-saving switches; use a scenario without them")
    return spring, autumn


def anchors_for(today: date, tz: ZoneInfo) -> Anchors:
    monday = today + timedelta(days=7 + (7 - today.weekday()) % 7)
    spring, autumn = _switches(tz, monday)
    return Anchors(monday, spring, autumn)


@dataclass(slots=True)
class RunValues:
    """Per-run unique values; everything generated is remembered so responses can be scanned for it."""

    partner_a: str
    partner_b: str
    run: str = field(default_factory=lambda: "".join(secrets.choice(string.ascii_uppercase) for _ in range(4)))
    tag: str = field(default_factory=lambda: "".join(secrets.choice(string.ascii_lowercase) for _ in range(6)).title())
    generated: list[str] = field(default_factory=list)

    def fill(self, text: str) -> str:
        def value(match: re.Match[str]) -> str:
            name = match[1]
            fixed = {"run": self.run, "tag": self.tag, "partner_a": self.partner_a, "partner_b": self.partner_b}
            if name in fixed:
                return fixed[name]
            if name == "mobile":
                made = f"+49151{secrets.randbelow(10**8):08d}"
            elif name == "phone":
                made = f"+4930{secrets.randbelow(10**8):08d}"
            elif name == "email":
                made = f"{secrets.token_hex(5)}@sandbox.example"
            else:
                raise ValueError(f"unknown placeholder {{{name}}}")
            self.generated.append(made)
            return made

        return re.sub(r"\{(\w+)\}", value, text)


@dataclass(frozen=True, slots=True)
class PlacedScenario:
    """A scenario in time, with the values the checks need to look things up."""

    scenario: Scenario
    anchors: Anchors
    tz: ZoneInfo
    values: RunValues
    window: Interval  # covers every day the scenario describes, at most 24 months

    def patient(self, patient_id: str) -> ScenarioPatient:
        return next(p for p in self.scenario.patients if p.id == patient_id)

    def personal_values(self) -> Iterator[str]:
        """Every patient value planted in the practice: names, contacts, PVS ids."""
        for p in self.scenario.patients:
            yield p.id
            yield p.family_name
            yield from (c.value for c in p.contacts)

    def local_day_start(self, day: date) -> datetime:
        return datetime.combine(day, time(0), self.tz).astimezone(UTC)


def available_scenarios() -> list[str]:
    folder = resources.files(__package__).joinpath("scenarios")
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))


def load_scenario(name: str) -> dict[str, Any]:
    """The raw data file, e.g. `dental-practice.v1`."""
    data: dict[str, Any] = json.loads(
        resources.files(__package__).joinpath("scenarios", f"{name}.json").read_text(encoding="utf-8")
    )
    return data


def _spans(rows: list[list[Any]]) -> tuple[WeeklySpan, ...]:
    return tuple(WeeklySpan(int(d), time.fromisoformat(s), time.fromisoformat(e)) for d, s, e in rows)


def _birth(text: str | None) -> BirthDate | None:
    if text is None:
        return None
    parts = [int(x) for x in text.split("-")]
    return BirthDate(parts[0], parts[1], parts[2] if len(parts) == 3 else None)


def place_scenario(data: dict[str, Any], today: date, values: RunValues) -> PlacedScenario:
    """Resolve relative days and placeholders; the result is what the sandbox loads."""
    tz = ZoneInfo(data["time_zone"])
    anchors = anchors_for(today, tz)
    fill = values.fill
    calendar = Calendar(
        columns=tuple(
            Column(
                id=c["id"],
                display_name=fill(c["display_name"]),
                kind=ColumnKind(c["kind"]),
                practitioner_id=c.get("practitioner"),
                room_id=c.get("room"),
                weekly_hours=_spans(c["weekly_hours"]),
            )
            for c in data["columns"]
        ),
        practitioners=tuple(Practitioner(p["id"], fill(p["display_name"])) for p in data["practitioners"]),
        rooms=tuple(Room(r["id"], fill(r["display_name"])) for r in data["rooms"]),
        appointment_types=tuple(
            AppointmentType(
                id=t["id"],
                display_name=t["display_name"],
                duration=timedelta(minutes=t["minutes"]),
                column_ids=tuple(t["columns"]),
                visit_kind=VisitKind(t["visit_kind"]),
                group_id=t.get("group"),
                buffer=timedelta(minutes=t.get("buffer_minutes", 0)),
                min_lead=timedelta(minutes=t.get("min_lead_minutes", 0)),
                max_horizon=timedelta(days=t["max_horizon_days"]) if t.get("max_horizon_days") else None,
            )
            for t in data["appointment_types"]
        ),
        appointment_type_groups=tuple(
            AppointmentTypeGroup(g["id"], g["display_name"]) for g in data["appointment_type_groups"]
        ),
        booking_areas=tuple(
            BookingArea(
                id=a["id"],
                display_name=a["display_name"],
                column_id=a.get("column"),
                appointment_type_ids=frozenset(a["appointment_types"]),
                weekly_spans=_spans(a["weekly_spans"]),
                valid_from=anchors.day(a["valid_from"]) if a.get("valid_from") else None,
                valid_until=anchors.day(a["valid_until"]) if a.get("valid_until") else None,
            )
            for a in data["booking_areas"]
        ),
    )
    patients = tuple(
        ScenarioPatient(
            id=p["id"],
            given_name=fill(p["given_name"]),
            family_name=fill(p["family_name"]),
            birth_date=_birth(p["birth_date"]),
            contacts=tuple(Contact(ContactKind(kind), fill(value)) for kind, value in p["contacts"]),
            active=p.get("active", True),
            consents=tuple((fill(partner), ConsentState(state)) for partner, state in p["consents"].items()),
        )
        for p in data["patients"]
    )
    scenario = Scenario(
        id=data["id"],
        version=data["version"],
        profile=PracticeProfile(display_name=fill(data["display_name"]), time_zone=data["time_zone"]),
        calendar=calendar,
        shifts=tuple(
            Shift(s["column"], anchors.day(s["valid_from"]), anchors.day(s["valid_until"]), _spans(s["weekly_spans"]))
            for s in data["shifts"]
        ),
        closed_days=tuple(ClosedDay(anchors.day(d["day"]), d.get("column")) for d in data["closed_days"]),
        absences=tuple(
            Absence(a["column"], Interval(anchors.instant(a["start"], tz), anchors.instant(a["end"], tz)))
            for a in data["absences"]
        ),
        entries=tuple(
            ScenarioEntry(
                column_ids=tuple(e["columns"]),
                interval=Interval(anchors.instant(e["start"], tz), anchors.instant(e["end"], tz)),
                kind=EntryKind(e["kind"]),
                appointment_type_id=e.get("type"),
                patient_id=e.get("patient"),
            )
            for e in data["entries"]
        ),
        patients=patients,
    )
    first = anchors.monday - timedelta(days=1)
    last = max(anchors.spring, anchors.autumn) + timedelta(days=8)
    start = datetime.combine(first, time(0), tz).astimezone(UTC)
    end = datetime.combine(last, time(0), tz).astimezone(UTC)
    return PlacedScenario(scenario, anchors, tz, values, Interval(start, end))
