"""A practice's description and its calendar configuration: columns, practitioners, rooms,
appointment types and their groups, booking areas.

`calendar_to_proto` returns constructor keyword arguments rather than a message because the same
fields fill both ListCalendarsResponse and a sandbox Scenario. Parsing back, a column or visit
kind this code does not know becomes PRACTITIONER or ANY and an unknown capability is skipped,
rather than refusing the whole practice or calendar.
"""

from __future__ import annotations

from datetime import timedelta

from otv.v1 import practice_pb2
from otv_sdk.conversion.instants import date_to_proto, optional_date, weekly_span_from_proto, weekly_span_to_proto
from otv_sdk.conversion.names import _id_or_none, _name_or_empty, column_ids_from_proto
from otv_sdk.models import (
    AdapterInfo,
    AppointmentType,
    AppointmentTypeGroup,
    BookingArea,
    Calendar,
    Capability,
    Column,
    ColumnKind,
    Practice,
    Practitioner,
    Room,
    VisitKind,
)
from otv_sdk.resources import format_name, parse_practice, parse_practice_child

__all__ = ["calendar_from_proto", "calendar_to_proto", "practice_from_proto", "practice_to_proto"]


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
            valid_from=optional_date(a, "valid_from", f"booking_areas[{i}].valid_from"),
            valid_until=optional_date(a, "valid_until", f"booking_areas[{i}].valid_until"),
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
