"""The one place where domain models meet protobuf, in both directions.

Parsing a request is also validating it: every `*_from_proto` that reads partner input raises
`InvalidArgument` naming the request field (`window.end_time`, `columns[2]`), so the servicers
never see a malformed value. Messages coming back from a remote adapter pass through the same
parsers; a malformed one is the adapter's fault and is reported as such by the caller.
"""

from __future__ import annotations

import calendar as _calendar
import re
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta, timezone

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from otv.v1 import (
    appointment_pb2,
    consent_pb2,
    patient_lookup_service_pb2,
    patient_pb2,
    practice_pb2,
    reader_service_pb2,
    sandbox_service_pb2,
    time_pb2,
)
from otv_sdk.changes import AppointmentChanged, BusyTimeChanged, CalendarConfigChanged, ChangeEvent, Heartbeat
from otv_sdk.errors import InvalidArgument
from otv_sdk.limits import (
    EARLIEST_INSTANT,
    EARLIEST_SECONDS,
    LATEST_INSTANT,
    LATEST_SECONDS,
    MAX_CONTACT_VALUE,
    MAX_CONTACTS,
    MAX_LOCALITY,
    MAX_NAME_PART,
    MAX_PATIENT_NOTE,
    MAX_POSTAL_CODE,
    MAX_STREET,
    MAX_TOKEN,
)
from otv_sdk.models import (
    UTC,
    Absence,
    AdapterInfo,
    Appointment,
    AppointmentState,
    AppointmentType,
    AppointmentTypeGroup,
    BookingArea,
    Calendar,
    Capability,
    Column,
    ColumnIntervals,
    ColumnKind,
    Consent,
    ConsentActor,
    ConsentEvidence,
    ConsentMethod,
    ConsentState,
    Contact,
    ContactKind,
    Gender,
    Hold,
    Interval,
    Patient,
    PatientDetails,
    PostalAddress,
    Practice,
    PracticeProfile,
    Practitioner,
    Room,
    Slot,
    VisitKind,
    WeeklySpan,
)
from otv_sdk.ports import MatchOutcome
from otv_sdk.resources import format_name, parse_child, parse_practice, parse_practice_child
from otv_sdk.scenario import BirthDate, ClosedDay, EntryKind, Scenario, ScenarioEntry, ScenarioPatient, Shift
from otv_sdk.timeline import IntervalArray, from_datetime
from otv_sdk.timewindow import MAX_WINDOW_MONTHS, window_too_long

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Packed arrays are uint32 seconds.
_UINT32_MAX = 2**32 - 1


# --- instants, dates, windows ----------------------------------------------------------------


def timestamp_to_datetime(ts: Timestamp, field: str) -> datetime:
    # Outside the calendar range (limits.py) a timestamp is refused before any arithmetic.
    if not EARLIEST_SECONDS <= ts.seconds <= LATEST_SECONDS:
        raise InvalidArgument.field(
            field, f"must lie between {EARLIEST_INSTANT:%Y-%m-%d} and {LATEST_INSTANT:%Y-%m-%d} (UTC)"
        )
    if not 0 <= ts.nanos <= 999_999_999:
        raise InvalidArgument.field(field, "nanos must be 0 to 999999999")
    return _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)


def datetime_to_timestamp(value: datetime) -> Timestamp:
    delta = value - _EPOCH
    seconds = delta.days * 86400 + delta.seconds
    return Timestamp(seconds=seconds, nanos=delta.microseconds * 1000)


def required_timestamp(message: object, name: str, field: str) -> datetime:
    if not message.HasField(name):  # type: ignore[attr-defined]
        raise InvalidArgument.field(field, "is required")
    return timestamp_to_datetime(getattr(message, name), field)


def optional_timestamp(message: object, name: str, field: str) -> datetime | None:
    if not message.HasField(name):  # type: ignore[attr-defined]
        return None
    return timestamp_to_datetime(getattr(message, name), field)


def window_from_proto(
    parent: object, name: str = "window", field: str | None = None, *, months: int = MAX_WINDOW_MONTHS
) -> Interval:
    """Parse a required TimeInterval field as a request window of at most `months` (24 for partners)."""
    field = field or name
    if not parent.HasField(name):  # type: ignore[attr-defined]
        raise InvalidArgument.field(field, "is required")
    msg: time_pb2.TimeInterval = getattr(parent, name)
    start = required_timestamp(msg, "start_time", f"{field}.start_time")
    end = required_timestamp(msg, "end_time", f"{field}.end_time")
    if end <= start:
        raise InvalidArgument.field(f"{field}.end_time", "must be after start_time")
    if window_too_long(start, end, months):
        raise InvalidArgument.field(f"{field}.end_time", f"window is longer than {months} months")
    return Interval(start, end)


def interval_to_proto(interval: Interval) -> time_pb2.TimeInterval:
    return time_pb2.TimeInterval(
        start_time=datetime_to_timestamp(interval.start), end_time=datetime_to_timestamp(interval.end)
    )


def interval_from_proto(msg: time_pb2.TimeInterval, field: str) -> Interval:
    start = required_timestamp(msg, "start_time", f"{field}.start_time")
    end = required_timestamp(msg, "end_time", f"{field}.end_time")
    if end <= start:
        raise InvalidArgument.field(f"{field}.end_time", "must be after start_time")
    return Interval(start, end)


def date_from_proto(msg: time_pb2.Date, field: str) -> date:
    """A real calendar date; 2026-02-30 or month 13 is INVALID_ARGUMENT naming the part."""
    if not 1 <= msg.year <= 9999:
        raise InvalidArgument.field(f"{field}.year", "must be 1 to 9999")
    if not 1 <= msg.month <= 12:
        raise InvalidArgument.field(f"{field}.month", "must be 1 to 12")
    last = _calendar.monthrange(msg.year, msg.month)[1]
    if not 1 <= msg.day <= last:
        raise InvalidArgument.field(f"{field}.day", f"must be 1 to {last} for {msg.year:04d}-{msg.month:02d}")
    return date(msg.year, msg.month, msg.day)


# The calendar day that has begun somewhere on Earth (UTC+14): a birth date after it is in the future
# for every practice, so no time zone makes a newborn's birth date invalid.
_EARLIEST_ZONE = timezone(timedelta(hours=14))


def birth_date_from_proto(parent: object, name: str, field: str) -> date:
    if not parent.HasField(name):  # type: ignore[attr-defined]
        raise InvalidArgument.field(field, "is required")
    value = date_from_proto(getattr(parent, name), field)
    if value > datetime.now(_EARLIEST_ZONE).date():
        raise InvalidArgument.field(field, "lies in the future")
    return value


def date_to_proto(value: date) -> time_pb2.Date:
    return time_pb2.Date(year=value.year, month=value.month, day=value.day)


def _optional_date(parent: object, name: str, field: str) -> date | None:
    if not parent.HasField(name):  # type: ignore[attr-defined]
        return None
    return date_from_proto(getattr(parent, name), field)


def _time_of_day(msg: time_pb2.TimeOfDay, field: str) -> time:
    if not 0 <= msg.hours <= 23:
        raise InvalidArgument.field(f"{field}.hours", "must be 0 to 23")
    if not 0 <= msg.minutes <= 59:
        raise InvalidArgument.field(f"{field}.minutes", "must be 0 to 59")
    return time(msg.hours, msg.minutes)


def weekly_span_to_proto(span: WeeklySpan) -> time_pb2.WeeklySpan:
    return time_pb2.WeeklySpan(
        weekday=span.weekday,  # type: ignore[arg-type]  # ISO numbering equals the enum's numbers
        start_time=time_pb2.TimeOfDay(hours=span.start.hour, minutes=span.start.minute),
        end_time=time_pb2.TimeOfDay(hours=span.end.hour, minutes=span.end.minute),
    )


def weekly_span_from_proto(msg: time_pb2.WeeklySpan, field: str) -> WeeklySpan:
    if not 1 <= msg.weekday <= 7:
        raise InvalidArgument.field(f"{field}.weekday", "is required")
    start = _time_of_day(msg.start_time, f"{field}.start_time")
    end = _time_of_day(msg.end_time, f"{field}.end_time")
    if end <= start:
        raise InvalidArgument.field(f"{field}.end_time", "must be after start_time")
    return WeeklySpan(msg.weekday, start, end)


# --- packed intervals ------------------------------------------------------------------------


def pack_intervals(
    practice_id: str, origin: datetime, column: ColumnIntervals, into: time_pb2.PackedIntervals | None = None
) -> time_pb2.PackedIntervals:
    """Encode intervals as delta-coded seconds (see PackedIntervals in time.proto).

    `into`: a message to fill in place, for example one just added to a response's repeated field.
    A message passed to a response's constructor is copied whole; 24 months of a practice's busy
    time are about 30,000 numbers, and the copy took longer than the packing."""
    items = column.intervals.sorted()
    origin_seconds = from_datetime(origin)
    durations = items.ends - items.starts
    deltas = np.diff(items.starts, prepend=np.int64(origin_seconds))
    if len(items) and (
        int(deltas.min()) < 0
        or int(deltas.max()) > _UINT32_MAX
        or int(durations.min()) <= 0
        or int(durations.max()) > _UINT32_MAX
    ):
        raise ValueError(f"column {column.column_id!r} has intervals that cannot be packed from {origin.isoformat()}")
    message = time_pb2.PackedIntervals() if into is None else into
    message.column = format_name(practice_id, "columns", column.column_id)
    _set_timestamp(message.origin, origin)
    message.start_deltas.extend(deltas.tolist())
    message.durations.extend(durations.tolist())
    return message


def unpack_intervals(msg: time_pb2.PackedIntervals, practice_id: str, field: str) -> ColumnIntervals:
    column_id = parse_practice_child(msg.column, f"{field}.column", "columns", practice_id)
    if len(msg.start_deltas) != len(msg.durations):
        raise InvalidArgument.field(field, "start_deltas and durations differ in length")
    origin = from_datetime(timestamp_to_datetime(msg.origin, f"{field}.origin"))
    deltas = np.array(msg.start_deltas, dtype=np.int64)
    durations = np.array(msg.durations, dtype=np.int64)
    if durations.shape[0] and int(durations.min()) == 0:
        raise InvalidArgument.field(f"{field}.durations[{int(np.argmin(durations))}]", "must be positive")
    starts = origin + np.cumsum(deltas)
    return ColumnIntervals(column_id, IntervalArray(starts, starts + durations))


# --- requests: names and lists of names ------------------------------------------------------


def practice_from_parent(name: str, field: str = "parent") -> str:
    return parse_practice(name, field)


def column_ids_from_proto(
    names: Sequence[str], practice_id: str, field: str = "columns", limit: int | None = None
) -> tuple[str, ...]:
    """Column ids in the order given; `limit` caps how many a request may name."""
    if limit is not None and len(names) > limit:
        raise InvalidArgument.field(field, f"names more than {limit} columns")
    ids: dict[str, None] = {}  # ordered, and a duplicate is found in constant time
    for index, name in enumerate(names):
        column_id = parse_practice_child(name, f"{field}[{index}]", "columns", practice_id)
        if column_id in ids:
            raise InvalidArgument.field(f"{field}[{index}]", "names a column twice")
        ids[column_id] = None
    return tuple(ids)


def child_id_from_proto(name: str, field: str, collection: str) -> tuple[str, str]:
    """Parse a child resource name; return (practice_id, child_id)."""
    parsed = parse_child(name, field, collection)
    return parsed.practice_id, parsed.id


def consent_name_parts(name: str, field: str = "name") -> tuple[str, str]:
    """`practices/{p}/patients/{patient}/consent` -> (practice_id, patient_id)."""
    if not name.endswith("/consent"):
        raise InvalidArgument.field(field, "must look like 'practices/{practice}/patients/{patient}/consent'")
    return child_id_from_proto(name.removesuffix("/consent"), field, "patients")


def consent_name(practice_id: str, patient_id: str) -> str:
    return format_name(practice_id, "patients", patient_id) + "/consent"


MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100


def bounded_text(value: str, field: str, limit: int) -> str:
    if len(value) > limit:
        raise InvalidArgument.field(field, f"is longer than {limit} characters")
    return value


def token_from_proto(value: str, field: str) -> str:
    """An opaque token the server issued (page token, cursor, etag): anything longer is not one."""
    if len(value) > MAX_TOKEN:
        raise InvalidArgument.field(field, f"is not a token this server issued (longer than {MAX_TOKEN} characters)")
    return value


def page_size_from_proto(value: int, field: str = "page_size") -> int:
    if value < 0:
        raise InvalidArgument.field(field, "must not be negative")
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


# --- practice and calendar -------------------------------------------------------------------

_CAPABILITIES = {
    Capability.READER: practice_pb2.CAPABILITY_READER,
    Capability.WRITER: practice_pb2.CAPABILITY_WRITER,
    Capability.PATIENT_LOOKUP: practice_pb2.CAPABILITY_PATIENT_LOOKUP,
    Capability.CONSENT: practice_pb2.CAPABILITY_CONSENT,
    Capability.CHANGE_FEED: practice_pb2.CAPABILITY_CHANGE_FEED,
    Capability.SANDBOX: practice_pb2.CAPABILITY_SANDBOX,
}
_CAPABILITIES_BACK = {v: k for k, v in _CAPABILITIES.items()}


def practice_to_proto(practice: Practice) -> practice_pb2.Practice:
    return practice_pb2.Practice(
        name=format_name(practice.id),
        display_name=practice.display_name,
        time_zone=practice.time_zone,
        capabilities=sorted(_CAPABILITIES[c] for c in practice.capabilities),
        adapter=practice_pb2.AdapterInfo(
            vendor=practice.adapter.vendor, product=practice.adapter.product, version=practice.adapter.version
        ),
        patient_identification=(
            practice_pb2.PATIENT_IDENTIFICATION_DETAILS
            if practice.takes_patient_details
            else practice_pb2.PATIENT_IDENTIFICATION_RESOURCE
        ),
    )


def practice_from_proto(msg: practice_pb2.Practice) -> Practice:
    return Practice(
        id=parse_practice(msg.name, "practice.name"),
        display_name=msg.display_name,
        time_zone=msg.time_zone,
        capabilities=frozenset(_CAPABILITIES_BACK[c] for c in msg.capabilities if c in _CAPABILITIES_BACK),
        adapter=AdapterInfo(msg.adapter.vendor, msg.adapter.product, msg.adapter.version),
    )


_COLUMN_KINDS = {
    ColumnKind.PRACTITIONER: practice_pb2.COLUMN_KIND_PRACTITIONER,
    ColumnKind.ROOM: practice_pb2.COLUMN_KIND_ROOM,
}
_COLUMN_KINDS_BACK = {v: k for k, v in _COLUMN_KINDS.items()}
_VISIT_KINDS = {
    VisitKind.FIRST: practice_pb2.VISIT_KIND_FIRST,
    VisitKind.FOLLOW_UP: practice_pb2.VISIT_KIND_FOLLOW_UP,
    VisitKind.ANY: practice_pb2.VISIT_KIND_ANY,
}
_VISIT_KINDS_BACK = {v: k for k, v in _VISIT_KINDS.items()}


def _name_or_empty(practice_id: str, collection: str, child_id: str | None) -> str:
    return format_name(practice_id, collection, child_id) if child_id else ""


def _id_or_none(name: str, field: str, collection: str, practice_id: str) -> str | None:
    return parse_practice_child(name, field, collection, practice_id) if name else None


def calendar_to_proto(practice_id: str, cal: Calendar) -> dict[str, list[object]]:
    """Fields of ListCalendarsResponse, ready for its constructor."""
    p = practice_id
    return {
        "columns": [
            practice_pb2.Column(
                name=format_name(p, "columns", c.id),
                display_name=c.display_name,
                kind=_COLUMN_KINDS[c.kind],
                practitioner=_name_or_empty(p, "practitioners", c.practitioner_id),
                room=_name_or_empty(p, "rooms", c.room_id),
                weekly_hours=[weekly_span_to_proto(s) for s in c.weekly_hours],
            )
            for c in cal.columns
        ],
        "practitioners": [
            practice_pb2.Practitioner(name=format_name(p, "practitioners", x.id), display_name=x.display_name)
            for x in cal.practitioners
        ],
        "rooms": [
            practice_pb2.Room(name=format_name(p, "rooms", r.id), display_name=r.display_name) for r in cal.rooms
        ],
        "appointment_types": [
            practice_pb2.AppointmentType(
                name=format_name(p, "appointmentTypes", t.id),
                display_name=t.display_name,
                duration_minutes=_minutes(t.duration),
                allowed_columns=[format_name(p, "columns", c) for c in t.column_ids],
                visit_kind=_VISIT_KINDS[t.visit_kind],
                group=_name_or_empty(p, "appointmentTypeGroups", t.group_id),
                buffer_minutes=_minutes(t.buffer),
                min_lead_minutes=_minutes(t.min_lead),
                max_horizon_days=t.max_horizon.days if t.max_horizon else 0,
            )
            for t in cal.appointment_types
        ],
        "appointment_type_groups": [
            practice_pb2.AppointmentTypeGroup(
                name=format_name(p, "appointmentTypeGroups", g.id), display_name=g.display_name
            )
            for g in cal.appointment_type_groups
        ],
        "booking_areas": [_booking_area_to_proto(p, a) for a in cal.booking_areas],
    }


def _booking_area_to_proto(p: str, area: BookingArea) -> practice_pb2.BookingArea:
    msg = practice_pb2.BookingArea(
        name=format_name(p, "bookingAreas", area.id),
        display_name=area.display_name,
        column=_name_or_empty(p, "columns", area.column_id),
        appointment_types=sorted(format_name(p, "appointmentTypes", t) for t in area.appointment_type_ids),
        weekly_spans=[weekly_span_to_proto(s) for s in area.weekly_spans],
    )
    if area.valid_from:
        msg.valid_from.CopyFrom(date_to_proto(area.valid_from))
    if area.valid_until:
        msg.valid_until.CopyFrom(date_to_proto(area.valid_until))
    return msg


def calendar_from_proto(practice_id: str, msg: object) -> Calendar:
    """Parse a ListCalendarsResponse (from a remote adapter) back into a Calendar."""
    p = practice_id
    columns = tuple(
        Column(
            id=parse_practice_child(c.name, f"columns[{i}].name", "columns", p),
            display_name=c.display_name,
            kind=_COLUMN_KINDS_BACK.get(c.kind, ColumnKind.PRACTITIONER),
            practitioner_id=_id_or_none(c.practitioner, f"columns[{i}].practitioner", "practitioners", p),
            room_id=_id_or_none(c.room, f"columns[{i}].room", "rooms", p),
            weekly_hours=tuple(
                weekly_span_from_proto(s, f"columns[{i}].weekly_hours[{j}]") for j, s in enumerate(c.weekly_hours)
            ),
        )
        for i, c in enumerate(msg.columns)  # type: ignore[attr-defined]
    )
    types = tuple(
        AppointmentType(
            id=parse_practice_child(t.name, f"appointment_types[{i}].name", "appointmentTypes", p),
            display_name=t.display_name,
            duration=timedelta(minutes=t.duration_minutes),
            column_ids=column_ids_from_proto(t.allowed_columns, p, f"appointment_types[{i}].allowed_columns"),
            visit_kind=_VISIT_KINDS_BACK.get(t.visit_kind, VisitKind.ANY),
            group_id=_id_or_none(t.group, f"appointment_types[{i}].group", "appointmentTypeGroups", p),
            buffer=timedelta(minutes=t.buffer_minutes),
            min_lead=timedelta(minutes=t.min_lead_minutes),
            max_horizon=timedelta(days=t.max_horizon_days) if t.max_horizon_days else None,
        )
        for i, t in enumerate(msg.appointment_types)  # type: ignore[attr-defined]
    )
    areas = tuple(
        BookingArea(
            id=parse_practice_child(a.name, f"booking_areas[{i}].name", "bookingAreas", p),
            display_name=a.display_name,
            column_id=_id_or_none(a.column, f"booking_areas[{i}].column", "columns", p),
            appointment_type_ids=frozenset(
                parse_practice_child(t, f"booking_areas[{i}].appointment_types[{j}]", "appointmentTypes", p)
                for j, t in enumerate(a.appointment_types)
            ),
            weekly_spans=tuple(
                weekly_span_from_proto(s, f"booking_areas[{i}].weekly_spans[{j}]") for j, s in enumerate(a.weekly_spans)
            ),
            valid_from=_optional_date(a, "valid_from", f"booking_areas[{i}].valid_from"),
            valid_until=_optional_date(a, "valid_until", f"booking_areas[{i}].valid_until"),
        )
        for i, a in enumerate(msg.booking_areas)  # type: ignore[attr-defined]
    )
    return Calendar(
        columns=columns,
        practitioners=tuple(
            Practitioner(parse_practice_child(x.name, f"practitioners[{i}].name", "practitioners", p), x.display_name)
            for i, x in enumerate(msg.practitioners)  # type: ignore[attr-defined]
        ),
        rooms=tuple(
            Room(parse_practice_child(r.name, f"rooms[{i}].name", "rooms", p), r.display_name)
            for i, r in enumerate(msg.rooms)  # type: ignore[attr-defined]
        ),
        appointment_types=types,
        appointment_type_groups=tuple(
            AppointmentTypeGroup(
                parse_practice_child(g.name, f"appointment_type_groups[{i}].name", "appointmentTypeGroups", p),
                g.display_name,
            )
            for i, g in enumerate(msg.appointment_type_groups)  # type: ignore[attr-defined]
        ),
        booking_areas=areas,
    )


def _minutes(value: timedelta) -> int:
    return int(value.total_seconds() // 60)


# --- slots --------------------------------------------------------------------------------------


def slot_to_proto(practice_id: str, slot: Slot, into: reader_service_pb2.Slot | None = None) -> reader_service_pb2.Slot:
    """`into`: a message to fill in place (one just added to a response's repeated field, so the
    page is not copied again). A page holds up to 1000 slots, converted on the event loop: the
    times are set in place rather than built as Timestamps and copied in, which halves the cost."""
    message = reader_service_pb2.Slot() if into is None else into
    message.column = format_name(practice_id, "columns", slot.column_id)
    _set_timestamp(message.start_time, slot.start)
    _set_timestamp(message.end_time, slot.end)
    return message


def _set_timestamp(target: Timestamp, value: datetime) -> None:
    delta = value - _EPOCH
    target.seconds = delta.days * 86400 + delta.seconds
    if delta.microseconds:
        target.nanos = delta.microseconds * 1000
    elif not target.seconds:
        target.SetInParent()  # the epoch itself: present, as a Timestamp passed in would be


def slot_from_proto(practice_id: str, msg: reader_service_pb2.Slot, field: str) -> Slot:
    return Slot(
        column_id=parse_practice_child(msg.column, f"{field}.column", "columns", practice_id),
        start=required_timestamp(msg, "start_time", f"{field}.start_time"),
        end=required_timestamp(msg, "end_time", f"{field}.end_time"),
    )


# --- absences --------------------------------------------------------------------------------


def absence_to_proto(practice_id: str, absence: Absence) -> practice_pb2.Absence:
    return practice_pb2.Absence(
        column=format_name(practice_id, "columns", absence.column_id),
        interval=interval_to_proto(absence.interval),
    )


def absence_from_proto(practice_id: str, msg: object, field: str) -> Absence:
    return Absence(
        column_id=parse_practice_child(msg.column, f"{field}.column", "columns", practice_id),  # type: ignore[attr-defined]
        interval=interval_from_proto(msg.interval, f"{field}.interval"),  # type: ignore[attr-defined]
    )


# --- appointments and holds ------------------------------------------------------------------

_APPOINTMENT_STATES = {
    AppointmentState.PENDING_PRACTICE: appointment_pb2.APPOINTMENT_STATE_PENDING_PRACTICE,
    AppointmentState.PENDING_TRANSFER: appointment_pb2.APPOINTMENT_STATE_PENDING_TRANSFER,
    AppointmentState.BOOKED: appointment_pb2.APPOINTMENT_STATE_BOOKED,
    AppointmentState.CANCELLED: appointment_pb2.APPOINTMENT_STATE_CANCELLED,
    AppointmentState.REJECTED: appointment_pb2.APPOINTMENT_STATE_REJECTED,
    AppointmentState.RESCHEDULED: appointment_pb2.APPOINTMENT_STATE_RESCHEDULED,
    AppointmentState.WRITING: appointment_pb2.APPOINTMENT_STATE_WRITING,
}
_APPOINTMENT_STATES_BACK = {v: k for k, v in _APPOINTMENT_STATES.items()}


def appointment_to_proto(practice_id: str, a: Appointment) -> appointment_pb2.Appointment:
    p = practice_id
    msg = appointment_pb2.Appointment(
        name=format_name(p, "appointments", a.id),
        column=format_name(p, "columns", a.column_id),
        appointment_type=format_name(p, "appointmentTypes", a.appointment_type_id),
        start_time=datetime_to_timestamp(a.interval.start),
        end_time=datetime_to_timestamp(a.interval.end),
        patient=_name_or_empty(p, "patients", a.patient_id),
        state=_APPOINTMENT_STATES[a.state],
        extra=a.extra,
        create_time=datetime_to_timestamp(a.create_time),
        rescheduled_from=_name_or_empty(p, "appointments", a.rescheduled_from),
        rescheduled_to=_name_or_empty(p, "appointments", a.rescheduled_to),
        etag=a.etag,
        reject_reason=a.reject_reason or "",
    )
    if a.cancel_time is not None:
        msg.cancel_time.CopyFrom(datetime_to_timestamp(a.cancel_time))
    return msg


def appointment_from_proto(practice_id: str, msg: appointment_pb2.Appointment, field: str) -> Appointment:
    p = practice_id
    if msg.state not in _APPOINTMENT_STATES_BACK:
        raise InvalidArgument.field(f"{field}.state", "is required")
    return Appointment(
        id=parse_practice_child(msg.name, f"{field}.name", "appointments", p),
        column_id=parse_practice_child(msg.column, f"{field}.column", "columns", p),
        appointment_type_id=parse_practice_child(
            msg.appointment_type, f"{field}.appointment_type", "appointmentTypes", p
        ),
        interval=Interval(
            required_timestamp(msg, "start_time", f"{field}.start_time"),
            required_timestamp(msg, "end_time", f"{field}.end_time"),
        ),
        patient_id=_id_or_none(msg.patient, f"{field}.patient", "patients", p) or "",
        state=_APPOINTMENT_STATES_BACK[msg.state],
        create_time=required_timestamp(msg, "create_time", f"{field}.create_time"),
        etag=msg.etag,
        extra=msg.extra,
        cancel_time=optional_timestamp(msg, "cancel_time", f"{field}.cancel_time"),
        rescheduled_from=_id_or_none(msg.rescheduled_from, f"{field}.rescheduled_from", "appointments", p),
        rescheduled_to=_id_or_none(msg.rescheduled_to, f"{field}.rescheduled_to", "appointments", p),
        reject_reason=msg.reject_reason or None,
    )


def hold_to_proto(practice_id: str, h: Hold) -> appointment_pb2.Hold:
    p = practice_id
    return appointment_pb2.Hold(
        name=format_name(p, "holds", h.id),
        column=format_name(p, "columns", h.column_id),
        appointment_type=format_name(p, "appointmentTypes", h.appointment_type_id),
        start_time=datetime_to_timestamp(h.interval.start),
        end_time=datetime_to_timestamp(h.interval.end),
        patient=_name_or_empty(p, "patients", h.patient_id),
        expire_time=datetime_to_timestamp(h.expire_time),
    )


def hold_from_proto(practice_id: str, msg: appointment_pb2.Hold, field: str) -> Hold:
    p = practice_id
    return Hold(
        id=parse_practice_child(msg.name, f"{field}.name", "holds", p),
        column_id=parse_practice_child(msg.column, f"{field}.column", "columns", p),
        appointment_type_id=parse_practice_child(
            msg.appointment_type, f"{field}.appointment_type", "appointmentTypes", p
        ),
        interval=Interval(
            required_timestamp(msg, "start_time", f"{field}.start_time"),
            required_timestamp(msg, "end_time", f"{field}.end_time"),
        ),
        patient_id=_id_or_none(msg.patient, f"{field}.patient", "patients", p) or "",
        expire_time=required_timestamp(msg, "expire_time", f"{field}.expire_time"),
    )


# --- patients and consent --------------------------------------------------------------------

_CONTACT_KINDS = {
    ContactKind.PHONE: patient_pb2.CONTACT_KIND_PHONE,
    ContactKind.MOBILE: patient_pb2.CONTACT_KIND_MOBILE,
    ContactKind.EMAIL: patient_pb2.CONTACT_KIND_EMAIL,
}
_CONTACT_KINDS_BACK = {v: k for k, v in _CONTACT_KINDS.items()}


def contact_kind_to_proto(kind: ContactKind) -> patient_pb2.ContactKind.ValueType:
    return _CONTACT_KINDS[kind]


def contacts_from_proto(
    contacts: Sequence[patient_pb2.Contact], field: str = "contacts", limit: int | None = None
) -> tuple[Contact, ...]:
    """`limit` caps how many a request may carry (a PVS's own records may hold more)."""
    if limit is not None and len(contacts) > limit:
        raise InvalidArgument.field(field, f"has more than {limit} contacts")
    result: list[Contact] = []
    for index, contact in enumerate(contacts):
        kind = _CONTACT_KINDS_BACK.get(contact.kind)
        if kind is None:
            raise InvalidArgument.field(f"{field}[{index}].kind", "is required")
        value = contact.value.strip()
        if not value:
            raise InvalidArgument.field(f"{field}[{index}].value", "is required")
        if len(value) > MAX_CONTACT_VALUE:
            raise InvalidArgument.field(f"{field}[{index}].value", f"is longer than {MAX_CONTACT_VALUE} characters")
        result.append(Contact(kind, value))
    return tuple(result)


def patient_to_proto(practice_id: str, patient: Patient) -> patient_pb2.Patient:
    msg = patient_pb2.Patient(
        name=format_name(practice_id, "patients", patient.id),
        given_name=patient.given_name,
        family_name=patient.family_name,
        contacts=[patient_pb2.Contact(kind=_CONTACT_KINDS[c.kind], value=c.value) for c in patient.contacts],
        created_online=patient.created_online,
    )
    if patient.birth_date is not None:
        msg.birth_date.CopyFrom(date_to_proto(patient.birth_date))
    if patient.create_time is not None:
        msg.create_time.CopyFrom(datetime_to_timestamp(patient.create_time))
    return msg


def patient_from_proto(practice_id: str, msg: patient_pb2.Patient, field: str) -> Patient:
    return Patient(
        id=parse_practice_child(msg.name, f"{field}.name", "patients", practice_id),
        given_name=msg.given_name,
        family_name=msg.family_name,
        birth_date=_optional_date(msg, "birth_date", f"{field}.birth_date"),
        contacts=contacts_from_proto(msg.contacts, f"{field}.contacts"),
        created_online=msg.created_online,
        create_time=optional_timestamp(msg, "create_time", f"{field}.create_time"),
    )


def name_part(value: str, field: str) -> str:
    """A required given or family name, trimmed."""
    cleaned = value.strip()
    if not cleaned:
        raise InvalidArgument.field(field, "is required")
    if len(cleaned) > MAX_NAME_PART:
        raise InvalidArgument.field(field, f"is longer than {MAX_NAME_PART} characters")
    return cleaned


_GENDERS = {
    Gender.FEMALE: patient_pb2.GENDER_FEMALE,
    Gender.MALE: patient_pb2.GENDER_MALE,
    Gender.DIVERSE: patient_pb2.GENDER_DIVERSE,
    Gender.UNDISCLOSED: patient_pb2.GENDER_UNDISCLOSED,
}
_GENDERS_BACK = {v: k for k, v in _GENDERS.items()}


def gender_from_proto(value: int, field: str) -> Gender | None:
    """None for GENDER_UNSPECIFIED (not given); a number the contract does not define is refused."""
    if value == patient_pb2.GENDER_UNSPECIFIED:
        return None
    if value not in _GENDERS_BACK:
        raise InvalidArgument.field(field, "is not a gender this contract defines")
    return _GENDERS_BACK[value]  # type: ignore[index]


def gender_to_proto(gender: Gender | None) -> patient_pb2.Gender.ValueType:
    return patient_pb2.GENDER_UNSPECIFIED if gender is None else _GENDERS[gender]


# ISO 3166-1 alpha-2: the 249 officially assigned codes.
_COUNTRIES = """AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT
BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI
FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ
IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK
ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN
PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH
TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW"""
COUNTRY_CODES = frozenset(_COUNTRIES.split())
# Postcode shapes checked per country; elsewhere 1-10 letters, digits, spaces or hyphens.
_POSTCODES = {
    "DE": (re.compile(r"[0-9]{5}"), "five digits"),
    "AT": (re.compile(r"[0-9]{4}"), "four digits"),
    "CH": (re.compile(r"[0-9]{4}"), "four digits"),
    "LI": (re.compile(r"[0-9]{4}"), "four digits"),
    "BE": (re.compile(r"[0-9]{4}"), "four digits"),
    "DK": (re.compile(r"[0-9]{4}"), "four digits"),
    "LU": (re.compile(r"[0-9]{4}"), "four digits"),
    "NL": (re.compile(r"[0-9]{4} ?[A-Z]{2}"), "four digits and two capital letters"),
}
_ANY_POSTCODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 -]*")


def _line(value: str, field: str, limit: int) -> str:
    """One line of free text: trimmed, printable, at most `limit` characters."""
    cleaned = value.strip()
    if len(cleaned) > limit:
        raise InvalidArgument.field(field, f"is longer than {limit} characters")
    if not cleaned.isprintable():
        raise InvalidArgument.field(field, "contains control characters")
    return cleaned


def patient_note_from_proto(value: str, field: str) -> str:
    """What the patient wrote for the practice: lines of printable text, at most MAX_PATIENT_NOTE."""
    cleaned = value.strip()
    if len(cleaned) > MAX_PATIENT_NOTE:
        raise InvalidArgument.field(field, f"is longer than {MAX_PATIENT_NOTE} characters")
    if not all(line.isprintable() for line in cleaned.replace("\r\n", "\n").split("\n")):
        raise InvalidArgument.field(field, "contains control characters other than line breaks")
    return cleaned.replace("\r\n", "\n")


def address_from_proto(parent: object, name: str, field: str) -> PostalAddress | None:
    """None when unset or empty; else `country` is required and every part is checked."""
    if not parent.HasField(name):  # type: ignore[attr-defined]
        return None
    msg: patient_pb2.PostalAddress = getattr(parent, name)
    street = _line(msg.street, f"{field}.street", MAX_STREET)
    postal_code = _line(msg.postal_code, f"{field}.postal_code", MAX_POSTAL_CODE)
    locality = _line(msg.locality, f"{field}.locality", MAX_LOCALITY)
    country = msg.country.strip()
    if not (street or postal_code or locality or country):
        return None
    if not country:
        raise InvalidArgument.field(f"{field}.country", "is required with an address (ISO 3166-1 alpha-2, e.g. DE)")
    if country not in COUNTRY_CODES:
        raise InvalidArgument.field(f"{field}.country", "is not an ISO 3166-1 alpha-2 code in capitals (e.g. DE)")
    if postal_code:
        shape, described = _POSTCODES.get(country, (_ANY_POSTCODE, "letters, digits, spaces or hyphens"))
        if not shape.fullmatch(postal_code):
            raise InvalidArgument.field(f"{field}.postal_code", f"must be {described} for {country}")
    return PostalAddress(street, postal_code, locality, country)


def address_to_proto(address: PostalAddress) -> patient_pb2.PostalAddress:
    return patient_pb2.PostalAddress(
        street=address.street, postal_code=address.postal_code, locality=address.locality, country=address.country
    )


def patient_details_from_proto(msg: patient_pb2.PatientDetails, field: str) -> PatientDetails:
    """The patient as a booking form took it; every part validated, naming `field.part`."""
    return PatientDetails(
        given_name=name_part(msg.given_name, f"{field}.given_name"),
        family_name=name_part(msg.family_name, f"{field}.family_name"),
        birth_date=birth_date_from_proto(msg, "birth_date", f"{field}.birth_date"),
        contacts=contacts_from_proto(msg.contacts, f"{field}.contacts", limit=MAX_CONTACTS),
        gender=gender_from_proto(msg.gender, f"{field}.gender"),
        address=address_from_proto(msg, "address", f"{field}.address"),
        note=patient_note_from_proto(msg.note, f"{field}.note"),
    )


def patient_details_to_proto(details: PatientDetails) -> patient_pb2.PatientDetails:
    msg = patient_pb2.PatientDetails(
        given_name=details.given_name,
        family_name=details.family_name,
        birth_date=date_to_proto(details.birth_date),
        contacts=[patient_pb2.Contact(kind=_CONTACT_KINDS[c.kind], value=c.value) for c in details.contacts],
        gender=gender_to_proto(details.gender),
        note=details.note,
    )
    if details.address is not None:
        msg.address.CopyFrom(address_to_proto(details.address))
    return msg


_MATCH_OUTCOMES = {
    MatchOutcome.MATCHED: patient_lookup_service_pb2.MATCH_OUTCOME_MATCHED,
    MatchOutcome.CREATED: patient_lookup_service_pb2.MATCH_OUTCOME_CREATED,
}
_MATCH_OUTCOMES_BACK = {v: k for k, v in _MATCH_OUTCOMES.items()}


def match_outcome_to_proto(outcome: MatchOutcome) -> patient_lookup_service_pb2.MatchOutcome.ValueType:
    return _MATCH_OUTCOMES[outcome]


def match_outcome_from_proto(value: int, field: str) -> MatchOutcome:
    if value not in _MATCH_OUTCOMES_BACK:
        raise InvalidArgument.field(field, "is required")
    return _MATCH_OUTCOMES_BACK[value]  # type: ignore[index]


_CONSENT_STATES = {
    ConsentState.OPEN: consent_pb2.CONSENT_STATE_OPEN,
    ConsentState.GRANTED: consent_pb2.CONSENT_STATE_GRANTED,
    ConsentState.DENIED: consent_pb2.CONSENT_STATE_DENIED,
}
_CONSENT_STATES_BACK = {v: k for k, v in _CONSENT_STATES.items()}
_CONSENT_METHODS = {
    ConsentMethod.ONLINE_FORM: consent_pb2.CONSENT_METHOD_ONLINE_FORM,
    ConsentMethod.PAPER: consent_pb2.CONSENT_METHOD_PAPER,
    ConsentMethod.VERBAL: consent_pb2.CONSENT_METHOD_VERBAL,
}
_CONSENT_METHODS_BACK = {v: k for k, v in _CONSENT_METHODS.items()}
_CONSENT_ACTORS = {
    ConsentActor.PARTNER: consent_pb2.CONSENT_ACTOR_PARTNER,
    ConsentActor.PRACTICE: consent_pb2.CONSENT_ACTOR_PRACTICE,
}
_CONSENT_ACTORS_BACK = {v: k for k, v in _CONSENT_ACTORS.items()}


def consent_state_from_proto(value: int, field: str) -> ConsentState:
    if value not in _CONSENT_STATES_BACK:
        raise InvalidArgument.field(field, "must be OPEN, GRANTED or DENIED")
    return _CONSENT_STATES_BACK[value]  # type: ignore[index]


def consent_state_to_proto(state: ConsentState) -> consent_pb2.ConsentState.ValueType:
    return _CONSENT_STATES[state]


def evidence_from_proto(parent: object, name: str, field: str) -> ConsentEvidence | None:
    if not parent.HasField(name):  # type: ignore[attr-defined]
        return None
    msg: consent_pb2.ConsentEvidence = getattr(parent, name)
    method = _CONSENT_METHODS_BACK.get(msg.method)
    if method is None:
        raise InvalidArgument.field(f"{field}.method", "is required")
    return ConsentEvidence(
        decide_time=required_timestamp(msg, "decide_time", f"{field}.decide_time"),
        method=method,
        text_version=bounded_text(msg.text_version, f"{field}.text_version", MAX_TOKEN),
    )


def evidence_to_proto(evidence: ConsentEvidence) -> consent_pb2.ConsentEvidence:
    return consent_pb2.ConsentEvidence(
        decide_time=datetime_to_timestamp(evidence.decide_time),
        method=_CONSENT_METHODS[evidence.method],
        text_version=evidence.text_version,
    )


def consent_to_proto(practice_id: str, consent: Consent) -> consent_pb2.Consent:
    msg = consent_pb2.Consent(name=consent_name(practice_id, consent.patient_id), state=_CONSENT_STATES[consent.state])
    if consent.evidence is not None:
        msg.evidence.CopyFrom(evidence_to_proto(consent.evidence))
    if consent.set_by is not None:
        msg.set_by = _CONSENT_ACTORS[consent.set_by]
    if consent.update_time is not None:
        msg.update_time.CopyFrom(datetime_to_timestamp(consent.update_time))
    return msg


def consent_from_proto(practice_id: str, msg: consent_pb2.Consent, field: str) -> Consent:
    msg_practice, patient_id = consent_name_parts(msg.name, f"{field}.name")
    if msg_practice != practice_id:
        raise InvalidArgument.field(f"{field}.name", "belongs to another practice")
    return Consent(
        patient_id=patient_id,
        state=consent_state_from_proto(msg.state, f"{field}.state"),
        evidence=evidence_from_proto(msg, "evidence", f"{field}.evidence"),
        set_by=_CONSENT_ACTORS_BACK.get(msg.set_by),
        update_time=optional_timestamp(msg, "update_time", f"{field}.update_time"),
    )


# --- sandbox scenarios -----------------------------------------------------------------------

_ENTRY_KINDS = {
    EntryKind.APPOINTMENT: sandbox_service_pb2.ENTRY_KIND_APPOINTMENT,
    EntryKind.RESERVATION: sandbox_service_pb2.ENTRY_KIND_RESERVATION,
}
_ENTRY_KINDS_BACK = {v: k for k, v in _ENTRY_KINDS.items()}


def scenario_to_proto(practice_id: str, scenario: Scenario) -> sandbox_service_pb2.Scenario:
    p = practice_id
    msg = sandbox_service_pb2.Scenario(
        id=scenario.id,
        version=scenario.version,
        display_name=scenario.profile.display_name,
        time_zone=scenario.profile.time_zone,
        **calendar_to_proto(p, scenario.calendar),  # type: ignore[arg-type]
        shifts=[
            practice_pb2.Shift(
                column=format_name(p, "columns", s.column_id),
                valid_from=date_to_proto(s.valid_from),
                valid_until=date_to_proto(s.valid_until),
                weekly_spans=[weekly_span_to_proto(x) for x in s.spans],
            )
            for s in scenario.shifts
        ],
        closed_days=[
            practice_pb2.ClosedDay(day=date_to_proto(d.day), column=_name_or_empty(p, "columns", d.column_id))
            for d in scenario.closed_days
        ],
        absences=[absence_to_proto(p, a) for a in scenario.absences],
        entries=[
            sandbox_service_pb2.CalendarEntry(
                columns=[format_name(p, "columns", c) for c in e.column_ids],
                interval=interval_to_proto(e.interval),
                kind=_ENTRY_KINDS[e.kind],
                appointment_type=_name_or_empty(p, "appointmentTypes", e.appointment_type_id),
                patient_id=e.patient_id or "",
            )
            for e in scenario.entries
        ],
    )
    for patient in scenario.patients:
        item = msg.patients.add(
            id=patient.id,
            given_name=patient.given_name,
            family_name=patient.family_name,
            contacts=[patient_pb2.Contact(kind=_CONTACT_KINDS[c.kind], value=c.value) for c in patient.contacts],
            inactive=not patient.active,
            consents=[
                sandbox_service_pb2.PartnerConsent(partner=partner, state=_CONSENT_STATES[state])
                for partner, state in patient.consents
            ],
        )
        if patient.birth_date is not None:
            b = patient.birth_date
            item.birth_date.CopyFrom(time_pb2.Date(year=b.year, month=b.month, day=b.day or 0))
    return msg


def _birth_on_file(msg: sandbox_service_pb2.ScenarioPatient, field: str) -> BirthDate | None:
    if not msg.HasField("birth_date"):
        return None
    b = msg.birth_date
    if b.day == 0:  # only year and month on file
        date_from_proto(time_pb2.Date(year=b.year, month=b.month, day=1), f"{field}.birth_date")
        return BirthDate(b.year, b.month, None)
    full = date_from_proto(b, f"{field}.birth_date")
    return BirthDate(full.year, full.month, full.day)


def scenario_from_proto(practice_id: str, msg: sandbox_service_pb2.Scenario, field: str = "scenario") -> Scenario:
    p = practice_id
    if not msg.time_zone:
        raise InvalidArgument.field(f"{field}.time_zone", "is required")
    entries: list[ScenarioEntry] = []
    for i, e in enumerate(msg.entries):
        kind = _ENTRY_KINDS_BACK.get(e.kind)
        if kind is None:
            raise InvalidArgument.field(f"{field}.entries[{i}].kind", "is required")
        entries.append(
            ScenarioEntry(
                column_ids=column_ids_from_proto(e.columns, p, f"{field}.entries[{i}].columns"),
                interval=interval_from_proto(e.interval, f"{field}.entries[{i}].interval"),
                kind=kind,
                appointment_type_id=_id_or_none(
                    e.appointment_type, f"{field}.entries[{i}].appointment_type", "appointmentTypes", p
                ),
                patient_id=e.patient_id or None,
            )
        )
    return Scenario(
        id=msg.id,
        version=msg.version,
        profile=PracticeProfile(display_name=msg.display_name, time_zone=msg.time_zone),
        calendar=calendar_from_proto(p, msg),
        shifts=tuple(
            Shift(
                column_id=parse_practice_child(s.column, f"{field}.shifts[{i}].column", "columns", p),
                valid_from=date_from_proto(s.valid_from, f"{field}.shifts[{i}].valid_from"),
                valid_until=date_from_proto(s.valid_until, f"{field}.shifts[{i}].valid_until"),
                spans=tuple(
                    weekly_span_from_proto(x, f"{field}.shifts[{i}].weekly_spans[{j}]")
                    for j, x in enumerate(s.weekly_spans)
                ),
            )
            for i, s in enumerate(msg.shifts)
        ),
        closed_days=tuple(
            ClosedDay(
                day=date_from_proto(d.day, f"{field}.closed_days[{i}].day"),
                column_id=_id_or_none(d.column, f"{field}.closed_days[{i}].column", "columns", p),
            )
            for i, d in enumerate(msg.closed_days)
        ),
        absences=tuple(absence_from_proto(p, a, f"{field}.absences[{i}]") for i, a in enumerate(msg.absences)),
        entries=tuple(entries),
        patients=tuple(
            ScenarioPatient(
                id=x.id,
                given_name=x.given_name,
                family_name=x.family_name,
                birth_date=_birth_on_file(x, f"{field}.patients[{i}]"),
                contacts=contacts_from_proto(x.contacts, f"{field}.patients[{i}].contacts"),
                active=not x.inactive,
                consents=tuple(
                    (c.partner, consent_state_from_proto(c.state, f"{field}.patients[{i}].consents[{j}].state"))
                    for j, c in enumerate(x.consents)
                ),
            )
            for i, x in enumerate(msg.patients)
        ),
    )


# --- change feed -------------------------------------------------------------------------------


def change_to_proto(practice_id: str, event: ChangeEvent) -> reader_service_pb2.WatchChangesResponse:
    msg = reader_service_pb2.WatchChangesResponse(
        cursor=event.cursor, change_time=datetime_to_timestamp(event.change_time)
    )
    change = event.change
    if isinstance(change, BusyTimeChanged):
        msg.busy_time.CopyFrom(
            reader_service_pb2.BusyTimeChange(
                column=format_name(practice_id, "columns", change.column_id),
                added=[interval_to_proto(i) for i in change.added],
                removed=[interval_to_proto(i) for i in change.removed],
            )
        )
    elif isinstance(change, AppointmentChanged):
        msg.appointment.appointment.CopyFrom(appointment_to_proto(practice_id, change.appointment))
    elif isinstance(change, CalendarConfigChanged):
        msg.calendar_config.SetInParent()
    else:
        msg.heartbeat.SetInParent()
    return msg


def change_from_proto(
    practice_id: str, msg: reader_service_pb2.WatchChangesResponse, field: str = "change"
) -> ChangeEvent:
    kind = msg.WhichOneof("change")
    change: BusyTimeChanged | AppointmentChanged | CalendarConfigChanged | Heartbeat
    if kind == "busy_time":
        b = msg.busy_time
        change = BusyTimeChanged(
            column_id=parse_practice_child(b.column, f"{field}.busy_time.column", "columns", practice_id),
            added=tuple(interval_from_proto(i, f"{field}.busy_time.added[{n}]") for n, i in enumerate(b.added)),
            removed=tuple(interval_from_proto(i, f"{field}.busy_time.removed[{n}]") for n, i in enumerate(b.removed)),
        )
    elif kind == "appointment":
        change = AppointmentChanged(
            appointment_from_proto(practice_id, msg.appointment.appointment, f"{field}.appointment")
        )
    elif kind == "calendar_config":
        change = CalendarConfigChanged()
    elif kind == "heartbeat":
        change = Heartbeat()
    else:
        raise InvalidArgument.field(field, "carries no change")
    return ChangeEvent(msg.cursor, required_timestamp(msg, "change_time", f"{field}.change_time"), change)
