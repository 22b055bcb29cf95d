"""Robustness: bad requests get a precise status naming the field, never INTERNAL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, timedelta

import grpc

from otv.v1 import reader_service_pb2, reader_service_pb2_grpc, time_pb2
from otv_conformance.cases import Group, case, check
from otv_conformance.session import Session
from otv_sdk.errors import ErrorCode, OtvError
from otv_sdk.ports import PageRequest, PatientQuery, SlotQuery
from otv_sdk.status import error_from_rpc_error

G = Group.ROBUSTNESS


async def _expect(call: Callable[[], Awaitable[object]], codes: set[ErrorCode], field_prefix: str | None) -> None:
    try:
        await call()
    except OtvError as error:
        check(error.code in codes, f"got {error.code.name}, expected one of {sorted(c.name for c in codes)}")
        if field_prefix is not None:
            fields = [v.field for v in error.violations]
            check(any(f.startswith(field_prefix) for f in fields), f"the error names {fields}, expected {field_prefix}")
        return
    check(False, "the request was accepted")


@case("robustness.window.reversed", "RB-1", G)
async def reversed_window(session: Session) -> None:
    """A window that ends before it starts is INVALID_ARGUMENT naming window.end_time."""
    start = session.at("A+7 08:00")
    window = time_pb2.TimeInterval()
    window.start_time.FromDatetime(start)
    window.end_time.FromDatetime(start - timedelta(hours=1))
    stub = reader_service_pb2_grpc.ReaderServiceStub(session.channel_a)
    request = reader_service_pb2.ListBusyTimesRequest(parent=f"practices/{session.practice_id}", window=window)

    async def call() -> object:
        try:
            return await stub.ListBusyTimes(request)
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc_error(error) from None

    await _expect(call, {ErrorCode.INVALID_ARGUMENT}, "window")


@case("robustness.column.unknown", "RB-2", G)
async def unknown_column(session: Session) -> None:
    """A column the practice does not have is INVALID_ARGUMENT or NOT_FOUND naming columns[0]."""
    window = session.days(session.day("A+7"), 1)
    await _expect(
        lambda: session.a.list_busy_times(session.practice_id, window, ["no-such-column"]),
        {ErrorCode.INVALID_ARGUMENT, ErrorCode.NOT_FOUND},
        "columns[0]",
    )


@case("robustness.appointment_type.unknown", "RB-2", G)
async def unknown_type(session: Session) -> None:
    """Slots for an appointment type the practice does not have: INVALID_ARGUMENT or NOT_FOUND, not INTERNAL."""
    window = session.days(session.day("A+7"), 1)
    query = SlotQuery("no-such-type", window, (), PageRequest(10))
    await _expect(
        lambda: session.a.find_slots(session.practice_id, query),
        {ErrorCode.INVALID_ARGUMENT, ErrorCode.NOT_FOUND},
        "appointment_type",
    )


@case("robustness.patient.birth_date", "RB-1", G)
async def future_birth_date(session: Session) -> None:
    """A birth date in the future is INVALID_ARGUMENT naming birth_date."""
    query = PatientQuery("Zukunft", f"Morgen-{session.placed.values.tag}", date.today() + timedelta(days=400))
    await _expect(lambda: session.lookup(query), {ErrorCode.INVALID_ARGUMENT}, "birth_date")


@case("robustness.appointment.unknown", "RB-2", G)
async def unknown_appointment(session: Session) -> None:
    """Reading an appointment that does not exist is NOT_FOUND."""
    await _expect(
        lambda: session.a.get_appointment(session.practice_id, "no-such-appointment"), {ErrorCode.NOT_FOUND}, None
    )
