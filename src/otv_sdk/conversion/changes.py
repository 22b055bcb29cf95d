"""Change-feed events: WatchChangesResponse to ChangeEvent and back.

An event whose `change` oneof is unset, for example one of a kind this code does not know, is
refused rather than skipped.
"""

from __future__ import annotations

from otv.v1 import reader_service_pb2
from otv_sdk.changes import AppointmentChanged, BusyTimeChanged, CalendarConfigChanged, ChangeEvent, Heartbeat
from otv_sdk.conversion.appointments import appointment_from_proto, appointment_to_proto
from otv_sdk.conversion.instants import (
    datetime_to_timestamp,
    interval_from_proto,
    interval_to_proto,
    required_timestamp,
)
from otv_sdk.errors import InvalidArgument
from otv_sdk.resources import format_name, parse_practice_child

__all__ = ["change_from_proto", "change_to_proto"]


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
