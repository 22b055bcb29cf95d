"""`slot_to_proto` sets the times in place for speed; the message must be the one built the plain way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from otv.v1 import reader_service_pb2
from otv_sdk import conversion as cv
from otv_sdk.models import Slot

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def plain(practice_id: str, slot: Slot) -> reader_service_pb2.Slot:
    def stamp(value: datetime) -> Timestamp:
        delta = value - EPOCH
        return Timestamp(seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000)

    return reader_service_pb2.Slot(
        column=f"practices/{practice_id}/columns/{slot.column_id}",
        start_time=stamp(slot.start),
        end_time=stamp(slot.end),
    )


@pytest.mark.parametrize(
    "start",
    [
        datetime(2027, 3, 28, 0, 55, tzinfo=UTC),
        datetime(2027, 3, 28, 0, 55, 7, 250_000, tzinfo=UTC),
        EPOCH,
        EPOCH - timedelta(minutes=30),
        datetime(2099, 12, 31, 23, 50, tzinfo=UTC),
    ],
)
def test_slot_message_is_the_plainly_built_one(start: datetime) -> None:
    slot = Slot("dr-a", start, start + timedelta(minutes=20))
    message = cv.slot_to_proto("p1", slot)
    assert message == plain("p1", slot)
    assert message.HasField("start_time")
    assert message.HasField("end_time")
    assert message.SerializeToString(deterministic=True) == plain("p1", slot).SerializeToString(deterministic=True)
    assert cv.slot_from_proto("p1", message, "slot") == slot
