"""The ports of a practice: the data a PVS vendor serves, and the services partners call.

A vendor implements **data access only**: `CalendarDataPort` (configuration, working-time rules,
absences, calendar entries), `CalendarWriterPort` (write and delete an entry), `PatientDataPort`
(patients born on a date, create, note), `ConsentDataPort`, and for certification installations
`SandboxPort`. These are the same methods a remote PVS serves as `otv.v1.PracticeDataService`.

Every rule is the gateway's: it builds the partner-facing ports (`ReaderPort` with free time and
slots, `WriterPort` with holds and booking modes, `PatientLookupPort` with the find-or-create
decision, `ConsentPort`, `ChangeFeedPort`) from the data ports, once for every practice.

An `Adapter` bundles the ports one practice's PVS offers. A PVS without a writer simply has no
`calendar_writer`; the gateway reads that as a capability and answers UNIMPLEMENTED instead of
calling it. The gateway reaches an adapter in-process (a plugin) or remotely (gRPC); both look the
same from here, which is what lets one test suite certify both.

Ports raise `otv_sdk.errors.OtvError` subclasses for anything a partner should see; messages must
carry no personal data.
"""

from __future__ import annotations

import enum
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from otv_sdk.changes import ChangeEvent, ChangeOutbox
from otv_sdk.models import (
    Absence,
    AdapterInfo,
    Appointment,
    Calendar,
    Capability,
    ColumnIntervals,
    Consent,
    ConsentActor,
    ConsentEvidence,
    ConsentState,
    Contact,
    Gender,
    Hold,
    Interval,
    NewPatient,
    Patient,
    PatientDetails,
    PatientRecord,
    PostalAddress,
    PracticeProfile,
    Slot,
    WorkingTimeRules,
)
from otv_sdk.scenario import Scenario

__all__ = [
    "Adapter",
    "AdapterFactory",
    "AppointmentQuery",
    "CalendarDataPort",
    "CalendarEntry",
    "CalendarWriterPort",
    "CallContext",
    "ChangeFeedPort",
    "ConsentDataPort",
    "ConsentPort",
    "MatchOutcome",
    "Page",
    "PageRequest",
    "PatientDataPort",
    "PatientLookupPort",
    "PatientQuery",
    "ReaderPort",
    "SandboxPort",
    "SlotQuery",
    "SlotRequest",
    "WriterPort",
    "WrittenEntry",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who is calling and how long they will wait.

    `partner_id` is the technical user the PVS records for every action (the seeds' dedicated
    charly user per partner). `deadline` is a `time.monotonic()` value, or None for no deadline.
    """

    partner_id: str
    deadline: float | None = None
    request_id: str | None = None

    def time_remaining(self) -> float | None:
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())


@dataclass(frozen=True, slots=True)
class PageRequest:
    page_size: int
    page_token: str = ""


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    next_page_token: str = ""


@dataclass(frozen=True, slots=True)
class SlotRequest:
    """A slot to hold or book for a patient: named by `patient_id` (a practice with patient lookup),
    or by `patient_details` with an empty `patient_id` (a practice without)."""

    appointment_type_id: str
    column_id: str
    start: datetime
    patient_id: str
    patient_details: PatientDetails | None = None


@dataclass(frozen=True, slots=True)
class SlotQuery:
    """Slots of one appointment type; no columns means every column the type allows."""

    appointment_type_id: str
    window: Interval
    column_ids: tuple[str, ...]
    page: PageRequest


@dataclass(frozen=True, slots=True)
class AppointmentQuery:
    page: PageRequest
    start: datetime | None = None
    end: datetime | None = None
    include_cancelled: bool = False


@dataclass(frozen=True, slots=True)
class PatientQuery:
    given_name: str
    family_name: str
    birth_date: date
    contacts: tuple[Contact, ...] = ()
    gender: Gender | None = None  # extra details: never matched on, noted for the practice
    address: PostalAddress | None = None


class MatchOutcome(enum.Enum):
    MATCHED = "matched"
    CREATED = "created"


class CalendarDataPort(ABC):
    """A PVS's calendar as it keeps it: what the gateway's availability engine is built from.

    Nothing here is computed: weekly hours come with the columns (`list_calendars`), the exceptions
    as the PVS records them (`list_working_time_rules`), and entries and absences as stored. The
    gateway applies shifts and closed days, daylight-saving days, booking areas, buffers, lead time,
    horizon and the start grid. Never returns patient data.
    """

    @abstractmethod
    async def get_practice(self, ctx: CallContext) -> PracticeProfile:
        """Name and time zone; capabilities and identity come from the `Adapter`."""

    @abstractmethod
    async def list_calendars(self, ctx: CallContext) -> Calendar:
        """Columns with their weekly hours, appointment types, booking areas."""

    @abstractmethod
    async def list_working_time_rules(self, ctx: CallContext, window: Interval) -> WorkingTimeRules:
        """Shifts and closed days touching the local days of window (more is harmless)."""

    @abstractmethod
    async def list_absences(self, ctx: CallContext, window: Interval, column_ids: Sequence[str]) -> list[Absence]:
        """Absences overlapping window, unclipped; no columns means every column."""

    @abstractmethod
    async def list_busy_times(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        """Calendar entries (appointments, reservations, extra appointments) overlapping window, per
        column in the order asked (every column if none), sorted by start; may overlap."""

    async def list_predefined_slots(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals] | None:
        """For a PVS whose calendar is a list of slots (DURIA): its free slots. None for any other PVS."""
        return None


class PatientDataPort(ABC):
    """A PVS's patient records, read and written as they are; matching is the gateway's."""

    @abstractmethod
    async def list_patients_born_on(self, ctx: CallContext, birth_date: date) -> list[PatientRecord]:
        """Every patient (active or not) with this full birth date, with `ctx.partner_id`'s consent."""

    @abstractmethod
    async def create_patient(self, ctx: CallContext, patient: NewPatient, request_id: str) -> PatientRecord:
        """Create the record, created online for `ctx.partner_id`; the same request_id again returns
        the record created the first time and creates nothing."""

    @abstractmethod
    async def append_patient_note(self, ctx: CallContext, patient_id: str, line: str, request_id: str) -> None:
        """Append one line to the patient's note; the same request_id again appends nothing."""

    @abstractmethod
    async def list_consented_patients(self, ctx: CallContext, after: str, limit: int) -> list[PatientRecord]:
        """Active patients whose consent for `ctx.partner_id` is granted, ids after `after`, by id."""


class ConsentDataPort(ABC):
    """Consent records per patient and partner, stored as given; who may record what is the gateway's."""

    @abstractmethod
    async def read_consent(self, ctx: CallContext, patient_id: str) -> Consent:
        """`ctx.partner_id`'s consent (OPEN if none recorded); NotFound for an unknown or inactive patient."""

    @abstractmethod
    async def write_consent(
        self,
        ctx: CallContext,
        patient_id: str,
        state: ConsentState,
        evidence: ConsentEvidence | None,
        actor: ConsentActor,
    ) -> Consent:
        """Store the decision for `ctx.partner_id` and return the record; NotFound as for reads."""


class ReaderPort(ABC):
    """ReaderService as partners see it; the gateway provides it. Never returns patient data."""

    @abstractmethod
    async def get_practice(self, ctx: CallContext) -> PracticeProfile:
        """Name and time zone; capabilities and identity come from the `Adapter`."""

    @abstractmethod
    async def list_calendars(self, ctx: CallContext) -> Calendar: ...

    @abstractmethod
    async def list_working_hours(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        """Effective working time (weekly hours, shifts and closed days applied), clipped to window."""

    @abstractmethod
    async def list_absences(self, ctx: CallContext, window: Interval, column_ids: Sequence[str]) -> list[Absence]:
        """Absences overlapping window, unclipped so multi-day absences keep their true extent."""

    @abstractmethod
    async def list_busy_times(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        """Busy time per column, clipped to window and sorted by start; may overlap."""

    @abstractmethod
    async def get_free_time(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str]
    ) -> list[ColumnIntervals]:
        """Free time per column: working time minus absences, busy time and the gateway's claims."""

    @abstractmethod
    async def find_slots(self, ctx: CallContext, query: SlotQuery) -> Page[Slot]:
        """Bookable slots, paged."""


class WriterPort(ABC):
    """Writes appointments into the PVS calendar on behalf of `ctx.partner_id`."""

    @abstractmethod
    async def hold_slot(self, ctx: CallContext, slot: SlotRequest) -> Hold: ...

    @abstractmethod
    async def confirm_hold(self, ctx: CallContext, hold_id: str) -> Appointment: ...

    @abstractmethod
    async def release_hold(self, ctx: CallContext, hold_id: str) -> None: ...

    @abstractmethod
    async def book_appointment(self, ctx: CallContext, slot: SlotRequest) -> Appointment: ...

    @abstractmethod
    async def cancel_appointment(self, ctx: CallContext, appointment_id: str, etag: str) -> Appointment: ...

    @abstractmethod
    async def reschedule_appointment(
        self, ctx: CallContext, appointment_id: str, etag: str, start: datetime, column_id: str | None
    ) -> Appointment: ...

    @abstractmethod
    async def get_appointment(self, ctx: CallContext, appointment_id: str) -> Appointment: ...

    @abstractmethod
    async def list_appointments(self, ctx: CallContext, query: AppointmentQuery) -> Page[Appointment]: ...


@dataclass(frozen=True, slots=True)
class CalendarEntry:
    """An online booking to be written into the PVS calendar."""

    reference: str  # the gateway's appointment id: a PVS that sees it again must not write twice
    column_id: str
    appointment_type_id: str
    interval: Interval
    patient_id: str
    partner_id: str  # shown to staff as the source of the booking
    category: str  # colour or category that marks online bookings in the PVS


@dataclass(frozen=True, slots=True)
class WrittenEntry:
    pvs_id: str
    extra: bool  # the PVS had no regular slot for it and entered it as an extra appointment (Zusatztermin)


class CalendarWriterPort(ABC):
    """What a PVS with a writer implements: put online bookings into its calendar and take them out.

    Holds, idempotency, booking modes and the exactly-one-winner rule are the gateway's job; the
    PVS only has to make these two operations safe to repeat.
    """

    @abstractmethod
    async def write_appointment(self, ctx: CallContext, entry: CalendarEntry) -> WrittenEntry:
        """Write the entry, or return the entry already written under its reference. Never lose it:
        if it fits no regular slot, enter it as an extra appointment and say so."""

    @abstractmethod
    async def delete_appointment(self, ctx: CallContext, pvs_id: str) -> CalendarEntry | None:
        """Remove it from the calendar (regular or extra) and return what was removed; None if it
        was already gone, which is no error (a retried delete)."""


class PatientLookupPort(ABC):
    """Finds or creates patients without duplicates; never returns one who denied consent."""

    @abstractmethod
    async def find_or_create_patient(self, ctx: CallContext, query: PatientQuery) -> tuple[Patient, MatchOutcome]: ...

    @abstractmethod
    async def list_shared_patients(self, ctx: CallContext, page: PageRequest) -> Page[Patient]: ...


class ConsentPort(ABC):
    """Per-partner consent (Einwilligung) of patients."""

    @abstractmethod
    async def get_consent(self, ctx: CallContext, patient_id: str) -> Consent: ...

    @abstractmethod
    async def record_consent(
        self, ctx: CallContext, patient_id: str, state: ConsentState, evidence: ConsentEvidence | None
    ) -> Consent: ...


@dataclass(slots=True)
class Adapter:
    """The ports one practice's PVS offers. A missing port is a missing capability."""

    info: AdapterInfo
    # What the PVS serves (a vendor fills these):
    calendar: CalendarDataPort | None = None
    calendar_writer: CalendarWriterPort | None = None
    patients: PatientDataPort | None = None
    consents: ConsentDataPort | None = None
    sandbox: SandboxPort | None = None  # certification installations only (otv_sdk.scenario)
    changes: ChangeOutbox | None = None  # the adapter announces its own calendar changes here
    # What partners call (the gateway fills these from the ports above):
    reader: ReaderPort | None = None
    writer: WriterPort | None = None
    patient_lookup: PatientLookupPort | None = None
    consent: ConsentPort | None = None
    change_feed: ChangeFeedPort | None = None
    extra_capabilities: frozenset[Capability] = field(default_factory=frozenset)

    @property
    def capabilities(self) -> frozenset[Capability]:
        present = set()
        if self.reader is not None or self.calendar is not None:
            present.add(Capability.READER)
        if self.writer is not None or self.calendar_writer is not None:
            present.add(Capability.WRITER)
        if self.patient_lookup is not None or self.patients is not None:
            present.add(Capability.PATIENT_LOOKUP)
        if self.consent is not None or self.consents is not None:
            present.add(Capability.CONSENT)
        if self.sandbox is not None:
            present.add(Capability.SANDBOX)
        if self.changes is not None or self.change_feed is not None:
            present.add(Capability.CHANGE_FEED)
        return frozenset(present) | self.extra_capabilities

    async def aclose(self) -> None:
        """Release connections; adapters with resources override by wrapping their ports."""
        seen: set[int] = set()
        ports = (self.calendar, self.calendar_writer, self.patients, self.consents, self.sandbox)
        for port in (*ports, self.reader, self.writer, self.patient_lookup, self.consent):
            closer = getattr(port, "aclose", None)
            if closer is not None and id(port) not in seen:
                seen.add(id(port))
                await closer()


class SandboxPort(ABC):
    """Offered only by sandbox installations of an adapter; see otv_sdk.scenario for the scenario."""

    @abstractmethod
    async def load_scenario(self, ctx: CallContext, scenario: Scenario) -> None:
        """Replace everything the practice holds with the scenario, atomically."""

    @abstractmethod
    async def reset(self, ctx: CallContext) -> None:
        """Remove everything the practice holds."""


class ChangeFeedPort(ABC):
    """A practice's change feed as one partner sees it (the gateway provides it)."""

    @abstractmethod
    def watch(self, ctx: CallContext, column_ids: Sequence[str], cursor: str) -> AsyncIterator[ChangeEvent]:
        """Events after `cursor` (empty: from now), then live ones, with heartbeats while idle.

        Raises FailedPrecondition for a cursor older than what is kept (re-read a snapshot) and
        InvalidArgument for one this feed never issued."""

    @abstractmethod
    async def current_cursor(self, ctx: CallContext) -> str:
        """The feed's position now: what a snapshot read returns so the partner can resume from it."""


class AdapterFactory(Protocol):
    """What an `otv.adapters` entry point names: builds the adapter of one practice.

    `settings` is the practice's `[practices.<id>.adapter.settings]` table; raise ValueError or a
    pydantic ValidationError for a bad one and the gateway reports it against that table.
    `base_dir` is the configuration file's folder, for settings that are relative paths.
    """

    def __call__(self, practice_id: str, settings: Mapping[str, Any], *, base_dir: Path | None = None) -> Adapter: ...
