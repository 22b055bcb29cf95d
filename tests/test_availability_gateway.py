"""Free time and slots through a real gateway, for both adapter transports."""

from __future__ import annotations

import time as _time
from datetime import UTC, datetime, time, timedelta
from typing import Any

import grpc
import pytest
from conftest import ANCHOR, PRACTICE, reference_settings
from test_validation import violation

from gateway.practice_reader import PracticeReader
from otv.v1 import reader_service_pb2, reader_service_pb2_grpc
from otv_rules.wallclock import to_utc, zone
from otv_sdk import conversion as cv
from otv_sdk.client import PartnerClient
from otv_sdk.errors import InvalidArgument
from otv_sdk.models import Interval
from otv_sdk.ports import CallContext, PageRequest, SlotQuery
from otv_sdk.reference import create_adapter
from otv_sdk.timeline import IntervalArray, concatenate, from_datetime, normalize, subtract
from otv_sdk.timewindow import add_months

BERLIN = zone("Europe/Berlin")


def _demo_window(days: int = 14) -> Interval:
    start = to_utc(ANCHOR, time(0), BERLIN)
    return Interval(start, start + timedelta(days=days))


def _upcoming(days: int = 14) -> Interval:
    now = datetime.now(UTC).replace(microsecond=0)
    return Interval(now, now + timedelta(days=days))


async def test_free_time_is_working_time_minus_busy_time_and_absences(client: PartnerClient) -> None:
    window = _demo_window(35)  # covers the Weber holiday, the training day and the team meeting
    free = {c.column_id: c.intervals for c in await client.get_free_time(PRACTICE, window)}
    working = {c.column_id: c.intervals for c in await client.list_working_hours(PRACTICE, window)}
    busy = {c.column_id: c.intervals for c in await client.list_busy_times(PRACTICE, window)}
    absences = await client.list_absences(PRACTICE, window)
    lo, hi = from_datetime(window.start), from_datetime(window.end)
    assert set(free) == {"berg", "weber", "prophylaxe"}
    for column_id, free_time in free.items():
        away = IntervalArray.from_intervals([a.interval for a in absences if a.column_id == column_id])
        blocked = normalize(concatenate(busy[column_id], away)).clipped(lo, hi)
        assert free_time == subtract(normalize(working[column_id]), blocked), column_id
    assert len(free["berg"]) > 100


async def test_slots_respect_lead_time_grid_area_and_free_time(client: PartnerClient) -> None:
    window = _upcoming()
    page = PageRequest(page_size=1000)
    kontrolle = await client.find_slots(PRACTICE, SlotQuery("kontrolle", window, (), page))
    schmerz = await client.find_slots(PRACTICE, SlotQuery("schmerz", window, (), page))
    free = {c.column_id: c.intervals for c in await client.get_free_time(PRACTICE, window)}
    assert kontrolle.items
    assert schmerz.items
    earliest = datetime.now(UTC) + timedelta(minutes=120) - timedelta(seconds=5)
    for slot in [*kontrolle.items, *schmerz.items]:
        local = slot.start.astimezone(BERLIN)
        assert slot.start >= earliest  # the demo types need two hours' notice
        assert local.minute % 5 == 0
        assert local.second == 0
        assert slot.column_id in ("berg", "weber")
        start, end = from_datetime(slot.start), from_datetime(slot.end)
        inside = free[slot.column_id].window(start, end)
        assert inside.pairs() == [(start, end)], slot
    # 08:00-08:30 on weekdays is the pain booking area: check-ups may not start there, pain slots do.
    assert not [s for s in kontrolle.items if s.start.astimezone(BERLIN).time() < time(8, 30)]
    assert [s for s in schmerz.items if s.start.astimezone(BERLIN).time() < time(8, 30)]
    assert [(s.start, s.column_id) for s in kontrolle.items] == sorted(
        ((s.start, s.column_id) for s in kontrolle.items), key=lambda t: (t[0], ["berg", "weber"].index(t[1]))
    )


async def test_slot_pages_concatenate_to_the_whole_answer(client: PartnerClient) -> None:
    window = _upcoming(7)
    whole = await client.find_slots(PRACTICE, SlotQuery("pzr", window, (), PageRequest(1000)))
    assert not whole.next_page_token
    collected = []
    token = ""
    for _ in range(100):
        page = await client.find_slots(PRACTICE, SlotQuery("pzr", window, (), PageRequest(7, token)))
        collected += page.items
        token = page.next_page_token
        if not token:
            break
    assert collected == list(whole.items)
    assert len(collected) > 7


async def test_page_token_of_another_query_or_tampered_is_invalid(client: PartnerClient) -> None:
    window = _upcoming(7)
    first = await client.find_slots(PRACTICE, SlotQuery("pzr", window, (), PageRequest(2)))
    with pytest.raises(InvalidArgument) as caught:
        await client.find_slots(PRACTICE, SlotQuery("kontrolle", window, (), PageRequest(2, first.next_page_token)))
    assert [v.field for v in caught.value.violations] == ["page_token"]
    with pytest.raises(InvalidArgument) as caught:
        await client.find_slots(PRACTICE, SlotQuery("pzr", window, (), PageRequest(2, "not-a-token")))
    assert [v.field for v in caught.value.violations] == ["page_token"]


@pytest.fixture
def reader(channel: grpc.aio.Channel) -> reader_service_pb2_grpc.ReaderServiceStub:
    return reader_service_pb2_grpc.ReaderServiceStub(channel)


def _find(type_name: str, columns: list[str] | None = None, days: int = 7) -> reader_service_pb2.FindSlotsRequest:
    return reader_service_pb2.FindSlotsRequest(
        parent=f"practices/{PRACTICE}",
        appointment_type=type_name,
        window=cv.interval_to_proto(_upcoming(days)),
        columns=columns or [],
    )


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (_find("practices/demo/appointmentTypes/nope"), "appointment_type"),
        (_find("practices/demo/columns/berg"), "appointment_type"),
        (_find("practices/other/appointmentTypes/pzr"), "appointment_type"),
        (_find("practices/demo/appointmentTypes/pzr", ["practices/demo/columns/berg"]), "columns[0]"),
        (_find("practices/demo/appointmentTypes/pzr", ["practices/demo/columns/nobody"]), "columns[0]"),
        (_find("practices/demo/appointmentTypes/pzr", days=800), "window.end_time"),
    ],
)
async def test_bad_slot_requests_name_the_field(reader: Any, request_: Any, field: str) -> None:
    assert await violation(reader.FindSlots(request_), grpc.StatusCode.INVALID_ARGUMENT) == [field]


async def test_bad_free_time_requests_name_the_field(reader: Any) -> None:
    request = reader_service_pb2.GetFreeTimeRequest(
        parent=f"practices/{PRACTICE}",
        window=cv.interval_to_proto(_upcoming()),
        columns=["practices/demo/columns/nobody"],
    )
    assert await violation(reader.GetFreeTime(request), grpc.StatusCode.INVALID_ARGUMENT) == ["columns[0]"]
    backwards = reader_service_pb2.GetFreeTimeRequest(
        parent=f"practices/{PRACTICE}",
        window=cv.interval_to_proto(Interval(datetime(2027, 1, 2, tzinfo=UTC), datetime(2027, 1, 3, tzinfo=UTC))),
    )
    backwards.window.end_time.seconds = backwards.window.start_time.seconds - 60
    assert await violation(reader.GetFreeTime(backwards), grpc.StatusCode.INVALID_ARGUMENT) == ["window.end_time"]


async def test_free_time_over_24_months_is_served(client: PartnerClient) -> None:
    start = datetime.fromtimestamp(int(_time.time()), UTC)
    free = await client.get_free_time(PRACTICE, Interval(start, add_months(start, 24)))
    assert sum(len(c.intervals) for c in free) > 2000


async def test_gateway_keeps_one_engine_for_todays_windows() -> None:
    adapter = create_adapter(PRACTICE, reference_settings())
    assert adapter.calendar is not None
    reader = PracticeReader(adapter.calendar, announced=True)
    ctx = CallContext("test")
    midnight = datetime.combine(datetime.now(BERLIN).date(), time(0), BERLIN).astimezone(UTC)
    await reader.get_free_time(ctx, Interval(midnight, add_months(midnight, 24)), ["berg"])
    kept = reader.kept_engine
    assert kept is not None
    await reader.find_slots(
        ctx, SlotQuery("kontrolle", Interval(midnight, midnight + timedelta(days=3)), (), PageRequest(10))
    )
    assert reader.kept_engine is kept
    await adapter.aclose()
