"""Appointments and holds, in both directions.

An appointment whose state number this code does not know is refused (`state` "is required"),
never mapped to a default. An empty patient name reads as `patient_id` "", as the models keep it.
"""

from __future__ import annotations

from otv.v1 import appointment_pb2
from otv_sdk.conversion.instants import datetime_to_timestamp, optional_timestamp, required_timestamp
from otv_sdk.conversion.names import _id_or_none, _name_or_empty
from otv_sdk.errors import InvalidArgument
from otv_sdk.models import Appointment, AppointmentState, Hold, Interval
from otv_sdk.resources import format_name, parse_practice_child

__all__ = ["appointment_from_proto", "appointment_to_proto", "hold_from_proto", "hold_to_proto"]


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
