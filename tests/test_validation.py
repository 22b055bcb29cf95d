"""Bad requests get the stated status and name the field, in google.rpc.BadRequest on the wire.

Requests are built with the raw generated stubs, as any partner's code could build them.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import date, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from otv.v1 import (
    consent_service_pb2,
    consent_service_pb2_grpc,
    patient_lookup_service_pb2,
    patient_lookup_service_pb2_grpc,
    reader_service_pb2,
    reader_service_pb2_grpc,
    time_pb2,
    writer_service_pb2,
    writer_service_pb2_grpc,
)

START = 1_805_000_000  # 2027-03-14, a plain instant
DAY = 86_400


def window(start: int = START, end: int = START + 7 * DAY, **overrides: Any) -> time_pb2.TimeInterval:
    return time_pb2.TimeInterval(
        start_time=overrides.get("start_ts", Timestamp(seconds=start)),
        end_time=overrides.get("end_ts", Timestamp(seconds=end)),
    )


async def violation(call: Awaitable[Any], code: grpc.StatusCode) -> list[str]:
    """Await a call that must fail with code; return the fields its BadRequest names."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = caught.value
    assert error.code() == code, error.details()
    status = rpc_status.from_call(error)
    fields: list[str] = []
    for detail in status.details if status else []:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            fields.extend(v.field for v in bad_request.field_violations)
    return fields


@pytest.fixture
def reader(channel: grpc.aio.Channel) -> reader_service_pb2_grpc.ReaderServiceStub:
    return reader_service_pb2_grpc.ReaderServiceStub(channel)


INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def test_unknown_practice_is_permission_denied_like_an_ungranted_one(reader: Any) -> None:
    request = reader_service_pb2.ListBusyTimesRequest(parent="practices/nowhere", window=window())
    assert await violation(reader.ListBusyTimes(request), grpc.StatusCode.PERMISSION_DENIED) == []


@pytest.mark.parametrize(
    "parent",
    ["", "demo", "practice/demo", "practices/Demo", "practices/-demo", "practices/demo/columns/berg"],
)
async def test_malformed_parent_is_invalid(reader: Any, parent: str) -> None:
    request = reader_service_pb2.ListCalendarsRequest(parent=parent)
    assert await violation(reader.ListCalendars(request), INVALID) == ["parent"]


async def test_malformed_practice_name_in_get_practice_names_name(reader: Any) -> None:
    request = reader_service_pb2.GetPracticeRequest(name="practices/")
    assert await violation(reader.GetPractice(request), INVALID) == ["name"]


async def test_missing_window_is_invalid(reader: Any) -> None:
    request = reader_service_pb2.ListBusyTimesRequest(parent="practices/demo")
    assert await violation(reader.ListBusyTimes(request), INVALID) == ["window"]


async def test_missing_window_end_is_invalid(reader: Any) -> None:
    request = reader_service_pb2.ListBusyTimesRequest(
        parent="practices/demo", window=time_pb2.TimeInterval(start_time=Timestamp(seconds=START))
    )
    assert await violation(reader.ListBusyTimes(request), INVALID) == ["window.end_time"]


@pytest.mark.parametrize("end", [START, START - 60])
async def test_end_not_after_start_is_invalid(reader: Any, end: int) -> None:
    request = reader_service_pb2.ListAbsencesRequest(parent="practices/demo", window=window(end=end))
    assert await violation(reader.ListAbsences(request), INVALID) == ["window.end_time"]


async def test_window_over_24_months_is_invalid_and_24_months_is_not(reader: Any) -> None:
    # 2027-03-14T... + 24 calendar months, computed independently of the server's arithmetic.
    start = Timestamp(seconds=START)
    start_dt = start.ToDatetime()
    limit = start_dt.replace(year=start_dt.year + 2)
    at_limit = Timestamp()
    at_limit.FromDatetime(limit)
    ok = reader_service_pb2.ListBusyTimesRequest(parent="practices/demo", window=window(end=at_limit.seconds))
    response = await reader.ListBusyTimes(ok)
    assert len(response.busy_times) == 3
    too_long = reader_service_pb2.ListBusyTimesRequest(parent="practices/demo", window=window(end=at_limit.seconds + 1))
    assert await violation(reader.ListBusyTimes(too_long), INVALID) == ["window.end_time"]


@pytest.mark.parametrize(
    ("timestamp", "field"),
    [
        (Timestamp(seconds=START, nanos=-1), "window.start_time"),
        (Timestamp(seconds=START, nanos=1_000_000_000), "window.start_time"),
        (Timestamp(seconds=-62135596801), "window.start_time"),
    ],
)
async def test_impossible_timestamps_are_invalid(reader: Any, timestamp: Timestamp, field: str) -> None:
    request = reader_service_pb2.ListWorkingHoursRequest(parent="practices/demo", window=window(start_ts=timestamp))
    assert await violation(reader.ListWorkingHours(request), INVALID) == [field]


async def test_end_beyond_year_9999_is_invalid(reader: Any) -> None:
    request = reader_service_pb2.ListWorkingHoursRequest(
        parent="practices/demo", window=window(end_ts=Timestamp(seconds=253402300800))
    )
    assert await violation(reader.ListWorkingHours(request), INVALID) == ["window.end_time"]


@pytest.mark.parametrize(
    ("columns", "field"),
    [
        (["practices/demo/columns/berg", "berg"], "columns[1]"),
        (["practices/other/columns/berg"], "columns[0]"),
        (["practices/demo/rooms/berg"], "columns[0]"),
        (["practices/demo/columns/"], "columns[0]"),
        (["practices/demo/columns/berg", "practices/demo/columns/berg"], "columns[1]"),
        (["practices/demo/columns/weber", "practices/demo/columns/nobody"], "columns[1]"),
    ],
)
async def test_bad_columns_are_invalid_naming_the_index(reader: Any, columns: list[str], field: str) -> None:
    request = reader_service_pb2.ListBusyTimesRequest(parent="practices/demo", window=window(), columns=columns)
    assert await violation(reader.ListBusyTimes(request), INVALID) == [field]


@pytest.mark.parametrize(
    ("birth_date", "field"),
    [
        (time_pb2.Date(year=2023, month=2, day=29), "birth_date.day"),
        (time_pb2.Date(year=1990, month=4, day=31), "birth_date.day"),
        (time_pb2.Date(year=1990, month=13, day=1), "birth_date.month"),
        (time_pb2.Date(year=0, month=1, day=1), "birth_date.year"),
        (None, "birth_date"),
    ],
)
async def test_impossible_birth_dates_are_invalid(
    channel: grpc.aio.Channel, birth_date: time_pb2.Date | None, field: str
) -> None:
    stub = patient_lookup_service_pb2_grpc.PatientLookupServiceStub(channel)
    request = patient_lookup_service_pb2.FindOrCreatePatientRequest(
        parent="practices/demo",
        request_id="r-1",
        given_name="Erika",
        family_name="Mustermann",
        birth_date=birth_date,
    )
    assert await violation(stub.FindOrCreatePatient(request), INVALID) == [field]


async def test_birth_date_in_the_future_is_invalid(channel: grpc.aio.Channel) -> None:
    stub = patient_lookup_service_pb2_grpc.PatientLookupServiceStub(channel)
    # Two days ahead is in the future in every time zone on Earth.
    future = date.today() + timedelta(days=2)
    request = patient_lookup_service_pb2.FindOrCreatePatientRequest(
        parent="practices/demo",
        request_id="r-1",
        given_name="Erika",
        family_name="Mustermann",
        birth_date=time_pb2.Date(year=future.year, month=future.month, day=future.day),
    )
    assert await violation(stub.FindOrCreatePatient(request), INVALID) == ["birth_date"]


async def test_mutating_request_without_request_id_is_invalid(channel: grpc.aio.Channel) -> None:
    stub = writer_service_pb2_grpc.WriterServiceStub(channel)
    request = writer_service_pb2.CancelAppointmentRequest(name="practices/demo/appointments/a-1")
    assert await violation(stub.CancelAppointment(request), INVALID) == ["request_id"]


async def test_malformed_names_in_writer_and_consent_are_invalid(channel: grpc.aio.Channel) -> None:
    writer = writer_service_pb2_grpc.WriterServiceStub(channel)
    request = writer_service_pb2.ConfirmHoldRequest(name="practices/demo/appointments/a-1", request_id="r-1")
    assert await violation(writer.ConfirmHold(request), INVALID) == ["name"]
    consent = consent_service_pb2_grpc.ConsentServiceStub(channel)
    get = consent_service_pb2.GetConsentRequest(name="practices/demo/patients/p-1")
    assert await violation(consent.GetConsent(get), INVALID) == ["name"]


async def test_book_with_missing_start_time_is_invalid(channel: grpc.aio.Channel) -> None:
    stub = writer_service_pb2_grpc.WriterServiceStub(channel)
    request = writer_service_pb2.BookAppointmentRequest(
        parent="practices/demo",
        request_id="r-1",
        appointment_type="practices/demo/appointmentTypes/kontrolle",
        column="practices/demo/columns/berg",
        patient="practices/demo/patients/p-1",
    )
    assert await violation(stub.BookAppointment(request), INVALID) == ["start_time"]


async def test_negative_page_size_is_invalid(channel: grpc.aio.Channel) -> None:
    stub = writer_service_pb2_grpc.WriterServiceStub(channel)
    request = writer_service_pb2.ListAppointmentsRequest(parent="practices/demo", page_size=-1)
    assert await violation(stub.ListAppointments(request), INVALID) == ["page_size"]


async def test_a_valid_list_request_succeeds(channel: grpc.aio.Channel) -> None:
    stub = writer_service_pb2_grpc.WriterServiceStub(channel)
    response = await stub.ListAppointments(writer_service_pb2.ListAppointmentsRequest(parent="practices/demo"))
    assert list(response.appointments) == []
    assert response.next_page_token == ""
