"""Typed domain models, free of protobuf and gRPC.

Adapters and the gateway's policy code work with these; the `conversion` package is the one place that
maps them to and from the wire. Instants are timezone-aware `datetime`s in UTC; wall-clock rules
(weekly hours, booking areas) are `time`s interpreted in the practice's time zone.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from otv_sdk.timeline import IntervalArray

__all__ = [
    "UTC",
    "Absence",
    "AdapterInfo",
    "Appointment",
    "AppointmentState",
    "AppointmentType",
    "AppointmentTypeGroup",
    "BookingArea",
    "Calendar",
    "Capability",
    "ClosedDay",
    "Column",
    "ColumnIntervals",
    "ColumnKind",
    "Consent",
    "ConsentActor",
    "ConsentEvidence",
    "ConsentMethod",
    "ConsentState",
    "Contact",
    "ContactKind",
    "Gender",
    "Hold",
    "Interval",
    "NewPatient",
    "Patient",
    "PatientDetails",
    "PatientRecord",
    "PostalAddress",
    "Practice",
    "PracticeProfile",
    "Practitioner",
    "Room",
    "Shift",
    "Slot",
    "VisitKind",
    "WeeklySpan",
    "WorkingTimeRules",
]


def _require_utc(value: datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() != timedelta(0):
        raise ValueError(f"{what} must be a UTC-aware datetime, got {value!r}")


@dataclass(frozen=True, slots=True, order=True)
class Interval:
    """Half-open span [start, end) of UTC instants."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        _require_utc(self.start, "Interval.start")
        _require_utc(self.end, "Interval.end")
        if self.end <= self.start:
            raise ValueError(f"Interval end {self.end.isoformat()} is not after start {self.start.isoformat()}")

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end

    def clip(self, window: Interval) -> Interval | None:
        """The part of this interval inside window, or None if they do not overlap."""
        if not self.overlaps(window):
            return None
        if window.start <= self.start and self.end <= window.end:
            return self
        return Interval(max(self.start, window.start), min(self.end, window.end))


class Capability(enum.Enum):
    READER = "reader"
    WRITER = "writer"
    PATIENT_LOOKUP = "patient_lookup"
    CONSENT = "consent"
    CHANGE_FEED = "change_feed"
    SANDBOX = "sandbox"


@dataclass(frozen=True, slots=True)
class AdapterInfo:
    vendor: str
    product: str
    version: str


@dataclass(frozen=True, slots=True)
class PracticeProfile:
    """What only the PVS knows about its practice."""

    display_name: str
    time_zone: str


@dataclass(frozen=True, slots=True)
class Practice:
    """A practice as partners see it: the PVS's profile plus what its adapter can do."""

    id: str
    display_name: str
    time_zone: str
    capabilities: frozenset[Capability]
    adapter: AdapterInfo

    @property
    def takes_patient_details(self) -> bool:
        """Holds and bookings name the patient by details (no patient lookup), not by resource."""
        return Capability.PATIENT_LOOKUP not in self.capabilities


class ColumnKind(enum.Enum):
    PRACTITIONER = "practitioner"
    ROOM = "room"


@dataclass(frozen=True, slots=True)
class WeeklySpan:
    """A recurring span in wall-clock time; weekday is ISO (1 = Monday)."""

    weekday: int
    start: time
    end: time

    def __post_init__(self) -> None:
        if not 1 <= self.weekday <= 7:
            raise ValueError(f"weekday must be 1..7, got {self.weekday}")
        if self.end <= self.start:
            raise ValueError(f"WeeklySpan end {self.end} is not after start {self.start}")


@dataclass(frozen=True, slots=True)
class Practitioner:
    id: str
    display_name: str


@dataclass(frozen=True, slots=True)
class Room:
    id: str
    display_name: str


@dataclass(frozen=True, slots=True)
class Column:
    """A calendar column (Spalte): one practitioner's or room's calendar."""

    id: str
    display_name: str
    kind: ColumnKind
    practitioner_id: str | None = None
    room_id: str | None = None
    weekly_hours: tuple[WeeklySpan, ...] = ()


class VisitKind(enum.Enum):
    FIRST = "first"
    FOLLOW_UP = "follow_up"
    ANY = "any"


@dataclass(frozen=True, slots=True)
class AppointmentTypeGroup:
    id: str
    display_name: str


@dataclass(frozen=True, slots=True)
class AppointmentType:
    """An appointment type (Terminart) that may be booked online."""

    id: str
    display_name: str
    duration: timedelta
    column_ids: tuple[str, ...]
    visit_kind: VisitKind = VisitKind.ANY
    group_id: str | None = None
    buffer: timedelta = timedelta(0)
    min_lead: timedelta = timedelta(0)
    max_horizon: timedelta | None = None

    def __post_init__(self) -> None:
        if self.duration <= timedelta(0):
            raise ValueError(f"appointment type {self.id!r} needs a positive duration")


@dataclass(frozen=True, slots=True)
class BookingArea:
    """A booking area (Terminvorgabebereich): recurring time reserved for some appointment types.

    column_id None means the area applies to every column.
    """

    id: str
    display_name: str
    column_id: str | None
    appointment_type_ids: frozenset[str]
    weekly_spans: tuple[WeeklySpan, ...]
    valid_from: date | None = None
    valid_until: date | None = None


@dataclass(frozen=True, slots=True)
class Calendar:
    """A practice's calendar configuration: everything a booking flow shows before times."""

    columns: tuple[Column, ...]
    practitioners: tuple[Practitioner, ...] = ()
    rooms: tuple[Room, ...] = ()
    appointment_types: tuple[AppointmentType, ...] = ()
    appointment_type_groups: tuple[AppointmentTypeGroup, ...] = ()
    booking_areas: tuple[BookingArea, ...] = ()

    def column_ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.columns)


@dataclass(frozen=True, slots=True)
class ColumnIntervals:
    """Intervals of one column (busy, free or working time), sorted by start, in epoch seconds."""

    column_id: str
    intervals: IntervalArray


@dataclass(frozen=True, slots=True)
class Slot:
    """A bookable start time in one column."""

    column_id: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Shift:
    """Replaces a column's weekly hours on each day from valid_from to valid_until (inclusive).

    On each of those days the column works exactly the spans of that day's weekday: a weekday
    without spans (or a shift without any) is a day off."""

    column_id: str
    valid_from: date
    valid_until: date
    spans: tuple[WeeklySpan, ...]


@dataclass(frozen=True, slots=True)
class ClosedDay:
    day: date
    column_id: str | None  # None closes every column


@dataclass(frozen=True, slots=True)
class WorkingTimeRules:
    """The exceptions to weekly hours as a PVS keeps them; the gateway turns them into working time."""

    shifts: tuple[Shift, ...] = ()
    closed_days: tuple[ClosedDay, ...] = ()


@dataclass(frozen=True, slots=True)
class Absence:
    """An absence (Abwesenheit). The reason is deliberately not modelled: it is private."""

    column_id: str
    interval: Interval


class AppointmentState(enum.Enum):
    PENDING_PRACTICE = "pending_practice"
    PENDING_TRANSFER = "pending_transfer"
    BOOKED = "booked"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    RESCHEDULED = "rescheduled"
    WRITING = "writing"


@dataclass(frozen=True, slots=True)
class Appointment:
    id: str
    column_id: str
    appointment_type_id: str
    interval: Interval
    patient_id: str
    state: AppointmentState
    create_time: datetime
    etag: str
    extra: bool = False
    cancel_time: datetime | None = None
    rescheduled_from: str | None = None
    rescheduled_to: str | None = None
    reject_reason: str | None = None  # why the practice (or the gateway) rejected it; set only when REJECTED


@dataclass(frozen=True, slots=True)
class Hold:
    id: str
    column_id: str
    appointment_type_id: str
    interval: Interval
    patient_id: str
    expire_time: datetime


class ContactKind(enum.Enum):
    PHONE = "phone"
    MOBILE = "mobile"
    EMAIL = "email"


@dataclass(frozen=True, slots=True)
class Contact:
    kind: ContactKind
    value: str


class Gender(enum.Enum):
    """As the patient gave it; German wording for notes in `GENDER_LABELS`."""

    FEMALE = "female"
    MALE = "male"
    DIVERSE = "diverse"
    UNDISCLOSED = "undisclosed"


@dataclass(frozen=True, slots=True)
class PostalAddress:
    """As typed (validated in conversion/patients.py): street and house number, postcode, town, ISO country."""

    street: str
    postal_code: str
    locality: str
    country: str  # ISO 3166-1 alpha-2

    def one_line(self) -> str:
        """E.g. "Hauptstraße 12a, 59320 Ennigerloh, DE"; empty parts left out."""
        town = " ".join(p for p in (self.postal_code, self.locality) if p)
        return ", ".join(p for p in (self.street, town, self.country) if p)


@dataclass(frozen=True, slots=True)
class PatientDetails:
    """A patient as a partner's booking form took it, for practices without patient lookup."""

    given_name: str
    family_name: str
    birth_date: date
    contacts: tuple[Contact, ...] = ()
    gender: Gender | None = None
    address: PostalAddress | None = None
    note: str = ""  # what the patient wrote for the practice


@dataclass(frozen=True, slots=True)
class Patient:
    id: str
    given_name: str
    family_name: str
    birth_date: date | None
    contacts: tuple[Contact, ...] = ()
    created_online: bool = False
    create_time: datetime | None = None


class ConsentState(enum.Enum):
    OPEN = "open"
    GRANTED = "granted"
    DENIED = "denied"


class ConsentMethod(enum.Enum):
    ONLINE_FORM = "online_form"
    PAPER = "paper"
    VERBAL = "verbal"


class ConsentActor(enum.Enum):
    PARTNER = "partner"
    PRACTICE = "practice"


@dataclass(frozen=True, slots=True)
class ConsentEvidence:
    decide_time: datetime
    method: ConsentMethod
    text_version: str


@dataclass(frozen=True, slots=True)
class Consent:
    patient_id: str
    state: ConsentState
    evidence: ConsentEvidence | None = None
    set_by: ConsentActor | None = None
    update_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class PatientRecord:
    """A patient as the PVS has it on file, with the calling partner's consent: what matching reads.

    Never returned to a partner as is: the gateway decides, then shows a `Patient`."""

    id: str
    given_name: str
    family_name: str
    birth_date: date | None  # None when the practice does not know the full date
    contacts: tuple[Contact, ...] = ()
    active: bool = True
    consent: ConsentState = ConsentState.OPEN
    created_online_by: str | None = None
    create_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class NewPatient:
    """A patient the gateway asks the PVS to create: names as typed, contacts already normalised."""

    given_name: str
    family_name: str
    birth_date: date
    contacts: tuple[Contact, ...] = ()
    note: str = ""
