"""Protobuf <-> models for what only PracticeDataService carries.

Everything the partner services share (calendars, absences, packed intervals, contacts, consent,
dates, resource names) stays in `conversion.py` and is used from there. As there, parsing is
validating: a request field that is wrong raises `InvalidArgument` naming it, and a malformed
answer from a PVS fails the same parser, which the client reports as the PVS's fault.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

from otv.v1 import patient_pb2, practice_pb2, time_pb2
from otv.v1 import practice_data_service_pb2 as pd
from otv_sdk import conversion as cv
from otv_sdk.changes import BusyTimeChanged, CalendarConfigChanged, Change, Heartbeat
from otv_sdk.errors import InvalidArgument
from otv_sdk.limits import MAX_CONTACTS, MAX_NAME_PART, MAX_TOKEN
from otv_sdk.models import (
    AdapterInfo,
    ClosedDay,
    ColumnIntervals,
    ContactKind,
    Interval,
    NewPatient,
    PatientRecord,
    PracticeProfile,
    Shift,
    WorkingTimeRules,
)
from otv_sdk.ports import CalendarEntry
from otv_sdk.resources import format_name, parse_practice_child
from otv_sdk.timeline import to_datetime

__all__ = [
    "MAX_NOTE",
    "DataCapability",
    "calendar_entry_from_proto",
    "calendar_entry_to_proto",
    "capabilities_from_proto",
    "capabilities_to_proto",
    "closed_day_from_proto",
    "closed_day_to_proto",
    "data_change_from_proto",
    "data_change_to_proto",
    "entries_from_proto",
    "entries_to_proto",
    "name_part_from_proto",
    "new_patient_from_proto",
    "new_patient_to_proto",
    "note_line_from_proto",
    "patient_record_from_proto",
    "patient_record_to_proto",
    "profile_from_proto",
    "profile_to_proto",
    "removed_entry_from_proto",
    "removed_entry_to_proto",
    "shift_from_proto",
    "shift_to_proto",
    "working_time_rules_from_proto",
    "working_time_rules_to_proto",
]

# Characters of a patient note or one appended line: room for a sentence, never a document.
MAX_NOTE = 1000


class DataCapability(enum.Enum):
    """Which optional parts of PracticeDataService a practice serves (the proto's DataCapability)."""

    CALENDAR_WRITE = "calendar_write"
    PATIENTS = "patients"
    CONSENT = "consent"
    CHANGES = "changes"
    PREDEFINED_SLOTS = "predefined_slots"
    SANDBOX = "sandbox"


_CAPABILITIES = {
    DataCapability.CALENDAR_WRITE: pd.DATA_CAPABILITY_CALENDAR_WRITE,
    DataCapability.PATIENTS: pd.DATA_CAPABILITY_PATIENTS,
    DataCapability.CONSENT: pd.DATA_CAPABILITY_CONSENT,
    DataCapability.CHANGES: pd.DATA_CAPABILITY_CHANGES,
    DataCapability.PREDEFINED_SLOTS: pd.DATA_CAPABILITY_PREDEFINED_SLOTS,
    DataCapability.SANDBOX: pd.DATA_CAPABILITY_SANDBOX,
}
_CAPABILITIES_BACK = {v: k for k, v in _CAPABILITIES.items()}


def capabilities_to_proto(capabilities: Iterable[DataCapability]) -> list[pd.DataCapability.ValueType]:
    return sorted(_CAPABILITIES[c] for c in capabilities)


def capabilities_from_proto(values: Iterable[int]) -> frozenset[DataCapability]:
    """Values this SDK does not know yet are skipped: a newer PVS may offer more."""
    return frozenset(_CAPABILITIES_BACK[v] for v in values if v in _CAPABILITIES_BACK)  # type: ignore[index]


def profile_to_proto(
    profile: PracticeProfile, info: AdapterInfo, capabilities: Iterable[DataCapability]
) -> pd.GetPracticeProfileResponse:
    return pd.GetPracticeProfileResponse(
        display_name=profile.display_name,
        time_zone=profile.time_zone,
        adapter=practice_pb2.AdapterInfo(vendor=info.vendor, product=info.product, version=info.version),
        capabilities=capabilities_to_proto(capabilities),
    )


def profile_from_proto(
    msg: pd.GetPracticeProfileResponse,
) -> tuple[PracticeProfile, AdapterInfo, frozenset[DataCapability]]:
    if not msg.time_zone:
        raise InvalidArgument.field("time_zone", "is required")
    a = msg.adapter
    return (
        PracticeProfile(display_name=msg.display_name, time_zone=msg.time_zone),
        AdapterInfo(a.vendor, a.product, a.version),
        capabilities_from_proto(msg.capabilities),
    )


# --- working-time rules ------------------------------------------------------------------------


def shift_to_proto(practice_id: str, shift: Shift) -> practice_pb2.Shift:
    return practice_pb2.Shift(
        column=format_name(practice_id, "columns", shift.column_id),
        valid_from=cv.date_to_proto(shift.valid_from),
        valid_until=cv.date_to_proto(shift.valid_until),
        weekly_spans=[cv.weekly_span_to_proto(s) for s in shift.spans],
    )


def shift_from_proto(practice_id: str, msg: practice_pb2.Shift, field: str) -> Shift:
    valid_from = cv.date_from_proto(msg.valid_from, f"{field}.valid_from")
    valid_until = cv.date_from_proto(msg.valid_until, f"{field}.valid_until")
    if valid_until < valid_from:
        raise InvalidArgument.field(f"{field}.valid_until", "must not be before valid_from")
    return Shift(
        column_id=parse_practice_child(msg.column, f"{field}.column", "columns", practice_id),
        valid_from=valid_from,
        valid_until=valid_until,
        spans=tuple(cv.weekly_span_from_proto(s, f"{field}.weekly_spans[{i}]") for i, s in enumerate(msg.weekly_spans)),
    )


def closed_day_to_proto(practice_id: str, day: ClosedDay) -> practice_pb2.ClosedDay:
    column = format_name(practice_id, "columns", day.column_id) if day.column_id else ""
    return practice_pb2.ClosedDay(day=cv.date_to_proto(day.day), column=column)


def closed_day_from_proto(practice_id: str, msg: practice_pb2.ClosedDay, field: str) -> ClosedDay:
    if not msg.HasField("day"):
        raise InvalidArgument.field(f"{field}.day", "is required")
    column = parse_practice_child(msg.column, f"{field}.column", "columns", practice_id) if msg.column else None
    return ClosedDay(day=cv.date_from_proto(msg.day, f"{field}.day"), column_id=column)


def working_time_rules_to_proto(practice_id: str, rules: WorkingTimeRules) -> pd.ListWorkingTimeRulesResponse:
    return pd.ListWorkingTimeRulesResponse(
        shifts=[shift_to_proto(practice_id, s) for s in rules.shifts],
        closed_days=[closed_day_to_proto(practice_id, d) for d in rules.closed_days],
    )


def working_time_rules_from_proto(practice_id: str, msg: pd.ListWorkingTimeRulesResponse) -> WorkingTimeRules:
    return WorkingTimeRules(
        shifts=tuple(shift_from_proto(practice_id, s, f"shifts[{i}]") for i, s in enumerate(msg.shifts)),
        closed_days=tuple(
            closed_day_from_proto(practice_id, d, f"closed_days[{i}]") for i, d in enumerate(msg.closed_days)
        ),
    )


# --- calendar entries ----------------------------------------------------------------------------


def entries_to_proto(
    practice_id: str,
    window: Interval,
    columns: Sequence[ColumnIntervals],
    into: RepeatedCompositeFieldContainer[time_pb2.PackedIntervals],
) -> None:
    """Entries are unclipped, so one may start before the window: the origin moves back to it
    (packed deltas cannot be negative). Columns without entries are left out, as the proto says.

    Packed into messages added to `into` (a response's repeated field): a list passed to the
    response's constructor would be copied whole, which for 24 months took longer than packing."""
    for column in columns:
        if not len(column.intervals):
            continue
        first = to_datetime(int(column.intervals.starts.min()))
        cv.pack_intervals(practice_id, min(window.start, first), column, into=into.add())


def entries_from_proto(
    practice_id: str, packed: Sequence[time_pb2.PackedIntervals], field: str
) -> list[ColumnIntervals]:
    return [cv.unpack_intervals(p, practice_id, f"{field}[{i}]") for i, p in enumerate(packed)]


def calendar_entry_to_proto(practice_id: str, entry: CalendarEntry) -> pd.WriteCalendarEntryRequest:
    return pd.WriteCalendarEntryRequest(
        parent=format_name(practice_id),
        reference=entry.reference,
        column=format_name(practice_id, "columns", entry.column_id),
        appointment_type=format_name(practice_id, "appointmentTypes", entry.appointment_type_id),
        interval=cv.interval_to_proto(entry.interval),
        patient=format_name(practice_id, "patients", entry.patient_id),
        category=entry.category,
    )


def calendar_entry_from_proto(practice_id: str, msg: pd.WriteCalendarEntryRequest, partner_id: str) -> CalendarEntry:
    """The entry to write; the partner it is written for travels in metadata, not in the message."""
    p = practice_id
    return CalendarEntry(
        reference=_token(msg.reference, "reference"),
        column_id=parse_practice_child(msg.column, "column", "columns", p),
        appointment_type_id=parse_practice_child(msg.appointment_type, "appointment_type", "appointmentTypes", p),
        interval=_required_interval(msg, "interval"),
        patient_id=parse_practice_child(msg.patient, "patient", "patients", p),
        partner_id=partner_id,
        category=cv.bounded_text(msg.category, "category", MAX_TOKEN),
    )


def removed_entry_to_proto(practice_id: str, removed: CalendarEntry | None) -> pd.DeleteCalendarEntryResponse:
    if removed is None:
        return pd.DeleteCalendarEntryResponse(deleted=False)
    return pd.DeleteCalendarEntryResponse(
        deleted=True,
        column=format_name(practice_id, "columns", removed.column_id),
        interval=cv.interval_to_proto(removed.interval),
        reference=removed.reference,
        appointment_type=_optional_name(practice_id, "appointmentTypes", removed.appointment_type_id),
        patient=_optional_name(practice_id, "patients", removed.patient_id),
        source_partner=removed.partner_id,
        category=removed.category,
    )


def removed_entry_from_proto(practice_id: str, msg: pd.DeleteCalendarEntryResponse) -> CalendarEntry | None:
    """The removed entry exactly as the PVS returns it, so a certification run sees what was stored.

    Column and interval are required. The rest may be empty (a PVS built before they were added to
    the contract): the gateway's booking does not depend on them, and certification fails on them.
    """
    if not msg.deleted:
        return None
    p = practice_id
    return CalendarEntry(
        reference=cv.bounded_text(msg.reference, "reference", MAX_TOKEN),
        column_id=parse_practice_child(msg.column, "column", "columns", p),
        appointment_type_id=_optional_child(msg.appointment_type, "appointment_type", "appointmentTypes", p),
        interval=_required_interval(msg, "interval"),
        patient_id=_optional_child(msg.patient, "patient", "patients", p),
        partner_id=cv.bounded_text(msg.source_partner, "source_partner", MAX_TOKEN),
        category=cv.bounded_text(msg.category, "category", MAX_TOKEN),
    )


def _optional_name(practice_id: str, collection: str, child_id: str) -> str:
    return format_name(practice_id, collection, child_id) if child_id else ""


def _optional_child(name: str, field: str, collection: str, practice_id: str) -> str:
    return parse_practice_child(name, field, collection, practice_id) if name else ""


def _required_interval(msg: pd.WriteCalendarEntryRequest | pd.DeleteCalendarEntryResponse, name: str) -> Interval:
    if not msg.HasField("interval"):
        raise InvalidArgument.field(name, "is required")
    return cv.interval_from_proto(msg.interval, name)


# --- patients ------------------------------------------------------------------------------------


def patient_record_to_proto(practice_id: str, record: PatientRecord) -> pd.PatientRecord:
    msg = pd.PatientRecord(
        name=format_name(practice_id, "patients", record.id),
        given_name=record.given_name,
        family_name=record.family_name,
        contacts=[_contact(c.kind, c.value) for c in record.contacts],
        active=record.active,
        consent=cv.consent_state_to_proto(record.consent),
        created_online_by=record.created_online_by or "",
    )
    if record.birth_date is not None:
        msg.birth_date.CopyFrom(cv.date_to_proto(record.birth_date))
    if record.create_time is not None:
        msg.create_time.CopyFrom(cv.datetime_to_timestamp(record.create_time))
    return msg


def patient_record_from_proto(practice_id: str, msg: pd.PatientRecord, field: str) -> PatientRecord:
    """Strict about consent: UNSPECIFIED is refused rather than read as OPEN, so a PVS that forgot
    the field cannot make a patient who denied consent look undecided."""
    return PatientRecord(
        id=parse_practice_child(msg.name, f"{field}.name", "patients", practice_id),
        given_name=msg.given_name,
        family_name=msg.family_name,
        birth_date=cv.optional_date(msg, "birth_date", f"{field}.birth_date"),
        contacts=cv.contacts_from_proto(msg.contacts, f"{field}.contacts"),
        active=msg.active,
        consent=cv.consent_state_from_proto(msg.consent, f"{field}.consent"),
        created_online_by=msg.created_online_by or None,
        create_time=cv.optional_timestamp(msg, "create_time", f"{field}.create_time"),
    )


def new_patient_to_proto(practice_id: str, patient: NewPatient, request_id: str) -> pd.CreatePatientRequest:
    return pd.CreatePatientRequest(
        parent=format_name(practice_id),
        request_id=request_id,
        given_name=patient.given_name,
        family_name=patient.family_name,
        birth_date=cv.date_to_proto(patient.birth_date),
        contacts=[_contact(c.kind, c.value) for c in patient.contacts],
        note=patient.note,
    )


def new_patient_from_proto(msg: pd.CreatePatientRequest) -> NewPatient:
    return NewPatient(
        given_name=name_part_from_proto(msg.given_name, "given_name"),
        family_name=name_part_from_proto(msg.family_name, "family_name"),
        birth_date=cv.birth_date_from_proto(msg, "birth_date", "birth_date"),
        contacts=cv.contacts_from_proto(msg.contacts, limit=MAX_CONTACTS),
        note=_text(msg.note, "note", single_line=False),
    )


def name_part_from_proto(value: str, field: str) -> str:
    cleaned = value.strip()
    if not cleaned:
        raise InvalidArgument.field(field, "is required")
    if len(cleaned) > MAX_NAME_PART:
        raise InvalidArgument.field(field, f"is longer than {MAX_NAME_PART} characters")
    return cleaned


def note_line_from_proto(value: str, field: str = "line") -> str:
    if not value.strip():
        raise InvalidArgument.field(field, "is required")
    return _text(value, field, single_line=True)


def _text(value: str, field: str, *, single_line: bool) -> str:
    if len(value) > MAX_NOTE:
        raise InvalidArgument.field(field, f"is longer than {MAX_NOTE} characters")
    if single_line and ("\n" in value or "\r" in value):
        raise InvalidArgument.field(field, "must be one line")
    return value


def _token(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument.field(field, "is required")
    return cv.bounded_text(value, field, MAX_TOKEN)


def _contact(kind: ContactKind, value: str) -> patient_pb2.Contact:
    return patient_pb2.Contact(kind=cv.contact_kind_to_proto(kind), value=value)


# --- changes -------------------------------------------------------------------------------------


def data_change_to_proto(
    practice_id: str, change: BusyTimeChanged | CalendarConfigChanged | Heartbeat
) -> pd.WatchDataChangesResponse:
    if isinstance(change, BusyTimeChanged):
        return pd.WatchDataChangesResponse(
            entries=pd.EntryChange(
                column=format_name(practice_id, "columns", change.column_id),
                added=[cv.interval_to_proto(i) for i in change.added],
                removed=[cv.interval_to_proto(i) for i in change.removed],
            )
        )
    if isinstance(change, CalendarConfigChanged):
        return pd.WatchDataChangesResponse(config=pd.ConfigChange())
    return pd.WatchDataChangesResponse(heartbeat=pd.DataHeartbeat())


def data_change_from_proto(practice_id: str, msg: pd.WatchDataChangesResponse, field: str = "change") -> Change:
    kind = msg.WhichOneof("change")
    if kind == "entries":
        e = msg.entries
        return BusyTimeChanged(
            column_id=parse_practice_child(e.column, f"{field}.entries.column", "columns", practice_id),
            added=tuple(cv.interval_from_proto(i, f"{field}.entries.added[{n}]") for n, i in enumerate(e.added)),
            removed=tuple(cv.interval_from_proto(i, f"{field}.entries.removed[{n}]") for n, i in enumerate(e.removed)),
        )
    if kind == "config":
        return CalendarConfigChanged()
    if kind == "heartbeat":
        return Heartbeat()
    raise InvalidArgument.field(field, "carries no change")
