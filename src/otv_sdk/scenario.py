"""A scenario: one complete practice, as a certification run loads it into a sandbox adapter.

A conformance run must control the data it checks against, yet must never touch a vendor's real
practice. So an adapter installed as a sandbox offers one extra port (`ports.SandboxPort`): load a
scenario and reset. Real installations leave `Adapter.sandbox` empty; the gateway never exposes
the port to partners.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date

from otv_sdk.models import (
    Absence,
    Calendar,
    ClosedDay,
    ConsentState,
    Contact,
    Interval,
    PracticeProfile,
    Shift,
)

__all__ = [
    "BirthDate",
    "ClosedDay",
    "EntryKind",
    "Scenario",
    "ScenarioEntry",
    "ScenarioPatient",
    "Shift",
]


class EntryKind(enum.Enum):
    APPOINTMENT = "appointment"
    RESERVATION = "reservation"


@dataclass(frozen=True, slots=True)
class ScenarioEntry:
    """An appointment or reservation occupying one or more columns."""

    column_ids: tuple[str, ...]
    interval: Interval
    kind: EntryKind
    appointment_type_id: str | None = None
    patient_id: str | None = None


@dataclass(frozen=True, slots=True)
class BirthDate:
    """A birth date as practices have it on file: sometimes only year and month."""

    year: int
    month: int
    day: int | None

    def full(self) -> date | None:
        return None if self.day is None else date(self.year, self.month, self.day)


@dataclass(frozen=True, slots=True)
class ScenarioPatient:
    id: str
    given_name: str
    family_name: str
    birth_date: BirthDate | None
    contacts: tuple[Contact, ...] = ()
    active: bool = True
    consents: tuple[tuple[str, ConsentState], ...] = ()  # (partner id, state)


@dataclass(frozen=True, slots=True)
class Scenario:
    """One complete practice. Instants are UTC; weekly rules are wall-clock in profile.time_zone."""

    id: str
    version: str
    profile: PracticeProfile
    calendar: Calendar
    shifts: tuple[Shift, ...] = ()
    closed_days: tuple[ClosedDay, ...] = ()
    absences: tuple[Absence, ...] = ()
    entries: tuple[ScenarioEntry, ...] = ()
    patients: tuple[ScenarioPatient, ...] = ()
