"""Free slots as the reader service answers them.

A page holds up to 1000 slots converted on the event loop, so `slot_to_proto` fills a message in
place (one just added to the response's repeated field) instead of building one to be copied.
"""

from __future__ import annotations

from otv.v1 import reader_service_pb2
from otv_sdk.conversion.instants import _set_timestamp, required_timestamp
from otv_sdk.models import Slot
from otv_sdk.resources import format_name, parse_practice_child

__all__ = ["slot_from_proto", "slot_to_proto"]


def slot_to_proto(practice_id: str, slot: Slot, into: reader_service_pb2.Slot | None = None) -> reader_service_pb2.Slot:
    """`into`: a message to fill in place (one just added to a response's repeated field, so the
    page is not copied again). A page holds up to 1000 slots, converted on the event loop: the
    times are set in place rather than built as Timestamps and copied in, which halves the cost."""
    message = reader_service_pb2.Slot() if into is None else into
    message.column = format_name(practice_id, "columns", slot.column_id)
    _set_timestamp(message.start_time, slot.start)
    _set_timestamp(message.end_time, slot.end)
    return message


def slot_from_proto(practice_id: str, msg: reader_service_pb2.Slot, field: str) -> Slot:
    return Slot(
        column_id=parse_practice_child(msg.column, f"{field}.column", "columns", practice_id),
        start=required_timestamp(msg, "start_time", f"{field}.start_time"),
        end=required_timestamp(msg, "end_time", f"{field}.end_time"),
    )
