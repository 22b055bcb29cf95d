"""ReaderService through a real gateway on loopback, for both adapter transports."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import grpc
import pytest
from conftest import ANCHOR, PRACTICE, reference_settings
from grpc_health.v1 import health_pb2, health_pb2_grpc

from otv.v1 import reader_service_pb2, reader_service_pb2_grpc
from otv_rules.wallclock import to_utc, zone
from otv_sdk.client import PartnerClient
from otv_sdk.errors import PermissionDenied
from otv_sdk.models import UTC, Capability, ColumnKind, Interval
from otv_sdk.ports import CalendarDataPort, CallContext
from otv_sdk.reference import ADAPTER_INFO, create_adapter
from otv_sdk.reference import demo as demo_data

BERLIN = zone("Europe/Berlin")
CTX = CallContext(partner_id="test")


def _pvs() -> CalendarDataPort:
    """The demo PVS's own data, read without the gateway."""
    data = create_adapter(PRACTICE, reference_settings()).calendar
    assert data is not None
    return data


def berlin(day_offset: int, hour: int, minute: int = 0) -> datetime:
    return to_utc(ANCHOR + timedelta(days=day_offset), time(hour, minute), BERLIN)


async def test_get_practice_reports_profile_and_capabilities(client: PartnerClient) -> None:
    practice = await client.get_practice(PRACTICE)
    assert practice.id == PRACTICE
    assert practice.time_zone == "Europe/Berlin"
    assert practice.display_name
    assert practice.capabilities == frozenset(
        {Capability.READER, Capability.WRITER, Capability.PATIENT_LOOKUP, Capability.CONSENT, Capability.CHANGE_FEED}
    )
    assert practice.adapter == ADAPTER_INFO


async def test_list_calendars_round_trips_the_pvs_configuration(client: PartnerClient) -> None:
    direct = await _pvs().list_calendars(CTX)
    through_gateway = await client.list_calendars(PRACTICE)
    assert through_gateway == direct
    # And the demo's defining facts survive, independent of the adapter's own reading.
    assert [c.id for c in through_gateway.columns] == [c[0] for c in demo_data._COLUMNS]
    room_column = next(c for c in through_gateway.columns if c.kind is ColumnKind.ROOM)
    assert room_column.room_id == "prophylaxe"
    assert room_column.practitioner_id is None
    types = {t.id: t for t in through_gateway.appointment_types}
    assert {t: int(v.duration.total_seconds() // 60) for t, v in types.items()} == {
        t[0]: t[2] for t in demo_data._TYPES
    }
    assert types["pzr"].column_ids == ("prophylaxe",)
    (area,) = through_gateway.booking_areas
    assert area.column_id is None
    assert area.appointment_type_ids == {"schmerz"}


async def test_busy_times_equal_the_pvs_calendar_entries(client: PartnerClient) -> None:
    window = Interval(berlin(0, 0), berlin(28, 0))
    direct = await _pvs().list_busy_times(CTX, window, ["berg", "weber", "prophylaxe"])
    busy = await client.list_busy_times(PRACTICE, window)
    assert [c.column_id for c in busy] == ["berg", "weber", "prophylaxe"]
    lo, hi = int(window.start.timestamp()), int(window.end.timestamp())
    assert [c.intervals for c in busy] == [c.intervals.clipped(lo, hi) for c in direct]
    assert all(len(c.intervals) > 50 for c in busy)
    for column in busy:
        intervals = list(column.intervals.intervals())
        assert all(window.start <= i.start < i.end <= window.end for i in intervals)
        assert intervals == sorted(intervals)


async def test_busy_times_clip_a_multi_day_reservation_to_the_window(client: PartnerClient) -> None:
    # The team meeting reserves berg from day 14 16:00 to day 15 10:00; ask for day 15 only.
    window = Interval(berlin(15, 0), berlin(16, 0))
    (berg,) = await client.list_busy_times(PRACTICE, window, ["berg"])
    assert next(berg.intervals.intervals()) == Interval(window.start, berlin(15, 10))


async def test_busy_times_for_selected_columns_keep_request_order(client: PartnerClient) -> None:
    window = Interval(berlin(0, 0), berlin(7, 0))
    busy = await client.list_busy_times(PRACTICE, window, ["prophylaxe", "berg"])
    assert [c.column_id for c in busy] == ["prophylaxe", "berg"]


async def test_busy_times_over_24_months_are_accepted(client: PartnerClient) -> None:
    start = berlin(0, 0)
    window = Interval(start, start.replace(year=start.year + 2))
    busy = await client.list_busy_times(PRACTICE, window)
    assert sum(len(c.intervals) for c in busy) > 1000


async def test_absences_are_listed_unclipped_without_reason(client: PartnerClient) -> None:
    window = Interval(berlin(25, 0), berlin(26, 0))
    absences = await client.list_absences(PRACTICE, window)
    assert [(a.column_id, a.interval) for a in absences] == [
        ("weber", Interval(berlin(21, 0), to_utc(ANCHOR + timedelta(days=31), time(0), BERLIN)))
    ]


async def test_working_hours_follow_the_wall_clock_across_the_spring_switch(client: PartnerClient) -> None:
    # Mondays before and after Sunday 2027-03-28: 08:00 Berlin is 07:00 UTC, then 06:00 UTC.
    window = Interval(berlin(0, 0), berlin(8, 0))
    (berg,) = await client.list_working_hours(PRACTICE, window, ["berg"])
    mondays = [i for i in berg.intervals.intervals() if i.start.astimezone(BERLIN).isoweekday() == 1]
    assert mondays == [
        Interval(datetime(2027, 3, 22, 7, tzinfo=UTC), datetime(2027, 3, 22, 11, tzinfo=UTC)),
        Interval(datetime(2027, 3, 22, 12, tzinfo=UTC), datetime(2027, 3, 22, 17, tzinfo=UTC)),
        Interval(datetime(2027, 3, 29, 6, tzinfo=UTC), datetime(2027, 3, 29, 10, tzinfo=UTC)),
        Interval(datetime(2027, 3, 29, 11, tzinfo=UTC), datetime(2027, 3, 29, 16, tzinfo=UTC)),
    ]
    assert all(i.duration in (timedelta(hours=4), timedelta(hours=5)) for i in berg.intervals.intervals())


async def test_working_hours_skip_closed_days_and_add_shifts(client: PartnerClient) -> None:
    new_year = to_utc(ANCHOR.replace(year=2028, month=1, day=1), time(0), BERLIN)
    window = Interval(new_year - timedelta(days=3), new_year + timedelta(days=1))
    (weber,) = await client.list_working_hours(PRACTICE, window, ["weber"])
    days = {i.start.astimezone(BERLIN).date().isoformat() for i in weber.intervals.intervals()}
    assert days == {"2027-12-29", "2027-12-30", "2027-12-31"}  # Jan 1 is a holiday
    saturday = ANCHOR + timedelta(days=(5 - ANCHOR.weekday()) % 7 + 28)
    window = Interval(to_utc(saturday, time(0), BERLIN), to_utc(saturday, time(23), BERLIN))
    (berg,) = await client.list_working_hours(PRACTICE, window, ["berg"])
    assert list(berg.intervals.intervals()) == [
        Interval(to_utc(saturday, time(9), BERLIN), to_utc(saturday, time(12), BERLIN))
    ]


async def test_unknown_practice_is_permission_denied(client: PartnerClient) -> None:
    with pytest.raises(PermissionDenied) as caught:
        await client.list_calendars("nowhere")
    assert caught.value.violations == ()


async def test_the_change_feed_refuses_an_unknown_column(channel: grpc.aio.Channel) -> None:
    stub = reader_service_pb2_grpc.ReaderServiceStub(channel)
    request = reader_service_pb2.WatchChangesRequest(
        parent=f"practices/{PRACTICE}", columns=[f"practices/{PRACTICE}/columns/nope"]
    )
    stream = stub.WatchChanges(request, timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stream.read()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_health_check_answers_serving(channel: grpc.aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "otv.v1.ReaderService", "otv.v1.WriterService"):
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
