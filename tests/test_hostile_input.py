"""What attackers and fuzzers sent, each through the real gRPC stack: a clear status, nothing changed.

Values the contract can carry but the domain cannot use (year 1, year 9999, a page token of a
hundred digits, ten thousand columns), streams that fail after they opened, and requests built to
be expensive. Where state is involved the test runs on both state stores and reads the state
before and after.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

import grpc
import pytest
from booking_env import ANCHOR, BookingEnv, booking_env
from google.protobuf.timestamp_pb2 import Timestamp
from patient_env import as_partner
from store_backends import BACKENDS
from test_validation import violation

from gateway.authentication import SignatureAuthenticator, Verified
from otv.v1 import (
    patient_lookup_service_pb2,
    patient_lookup_service_pb2_grpc,
    patient_pb2,
    reader_service_pb2,
    reader_service_pb2_grpc,
    time_pb2,
    writer_service_pb2,
    writer_service_pb2_grpc,
)
from otv_sdk.limits import MAX_COLUMNS, MAX_CONTACTS

INVALID = grpc.StatusCode.INVALID_ARGUMENT
YEAR_1 = Timestamp(seconds=-62135596800)
YEAR_9999 = Timestamp(seconds=253402300799)
LEAKED = ("Traceback", "Error", "Exception", "exceeds the limit", "invalid literal")


async def refused(call: Awaitable[Any], code: grpc.StatusCode = INVALID) -> list[str]:
    """The fields a refused call's BadRequest names; the message leaks no Python internals."""
    leaked: list[str] = []

    async def checked() -> Any:
        try:
            return await call
        except grpc.aio.AioRpcError as error:
            leaked.extend(word for word in LEAKED if word in (error.details() or ""))
            raise

    fields = await violation(checked(), code)
    assert leaked == []
    return fields


def near(seconds: int) -> Timestamp:
    return Timestamp(seconds=seconds)


NOW = int(datetime.combine(ANCHOR, time(9), UTC).timestamp())


def windows() -> list[tuple[time_pb2.TimeInterval, str]]:
    """Windows at and near the edges of what a Timestamp can carry, and the field each is refused for."""
    return [
        (time_pb2.TimeInterval(start_time=YEAR_1, end_time=near(-62135596800 + 86400)), "window.start_time"),
        (time_pb2.TimeInterval(start_time=near(253402300799 - 86400), end_time=YEAR_9999), "window.start_time"),
        (time_pb2.TimeInterval(start_time=near(NOW), end_time=YEAR_9999), "window.end_time"),
        (time_pb2.TimeInterval(start_time=YEAR_1, end_time=near(NOW)), "window.start_time"),
    ]


@pytest.mark.parametrize("method", ["ListWorkingHours", "ListAbsences", "ListBusyTimes", "GetFreeTime", "FindSlots"])
@pytest.mark.parametrize("case", range(4))
async def test_windows_at_the_edges_of_time_are_invalid_argument(
    channel: grpc.aio.Channel, method: str, case: int
) -> None:
    window, field = windows()[case]
    request_type = getattr(reader_service_pb2, f"{method}Request")
    request = request_type(parent="practices/demo", window=window)
    if method == "FindSlots":
        request.appointment_type = "practices/demo/appointmentTypes/kontrolle"
    stub = reader_service_pb2_grpc.ReaderServiceStub(channel)
    assert await refused(getattr(stub, method)(request, timeout=10)) == [field]


def _appointments(database: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(database) as conn:
        return conn.execute(
            "SELECT id, column_id, start_utc, end_utc, reference FROM calendar_entries ORDER BY id"
        ).fetchall()


async def _state(env: BookingEnv) -> tuple[Any, ...]:
    """Everything a refused writer call could have changed: PVS entries, holds, appointments, claims."""

    def read(tx: Any) -> tuple[Any, ...]:
        return tuple(
            tuple(sorted(tuple(sorted(row.items())) for row in tx.all(f"SELECT * FROM {table}")))
            for table in ("holds", "appointments", "claims", "requests")
        )

    return (_appointments(env.database_path), await env.gateway.router.store.run(read))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("start", [YEAR_1, YEAR_9999, near(253402300799 - 3600), near(-62135596800 + 3600)])
async def test_slot_times_at_the_edges_of_time_change_nothing(backend: str, tmp_path: Path, start: Timestamp) -> None:
    async with booking_env(backend, tmp_path) as env:
        patient = await env.patient()
        before = await _state(env)
        async with grpc.aio.insecure_channel(env.gateway.address) as channel:
            writer = writer_service_pb2_grpc.WriterServiceStub(channel)
            slot = {
                "parent": "practices/demo",
                "appointment_type": "practices/demo/appointmentTypes/kontrolle",
                "column": "practices/demo/columns/berg",
                "start_time": start,
                "patient": f"practices/demo/patients/{patient}",
            }
            meta = as_partner("alpha")
            hold = writer_service_pb2.HoldSlotRequest(request_id="edge-hold", **slot)
            assert await refused(writer.HoldSlot(hold, metadata=meta)) == ["start_time"]
            book = writer_service_pb2.BookAppointmentRequest(request_id="edge-book", **slot)
            assert await refused(writer.BookAppointment(book, metadata=meta)) == ["start_time"]
            listing = writer_service_pb2.ListAppointmentsRequest(parent="practices/demo", start_time=start)
            assert await refused(writer.ListAppointments(listing, metadata=meta)) == ["start_time"]
            move = writer_service_pb2.RescheduleAppointmentRequest(
                name="practices/demo/appointments/a1", request_id="edge-move", start_time=start
            )
            assert await refused(writer.RescheduleAppointment(move, metadata=meta)) == ["start_time"]
        assert await _state(env) == before


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "token",
    ["9" * 100 + ":a", "-" + "9" * 40 + ":a", "١٢٣:a", "9223372036854775808:a", "1e9:a", "x" * 5000],
)
async def test_page_tokens_no_server_issued_are_invalid_argument(backend: str, tmp_path: Path, token: str) -> None:
    async with booking_env(backend, tmp_path) as env, grpc.aio.insecure_channel(env.gateway.address) as channel:
        writer = writer_service_pb2_grpc.WriterServiceStub(channel)
        request = writer_service_pb2.ListAppointmentsRequest(parent="practices/demo", page_token=token)
        assert await refused(writer.ListAppointments(request, metadata=as_partner("alpha"))) == ["page_token"]
        patients = patient_lookup_service_pb2_grpc.PatientLookupServiceStub(channel)
        shared = patient_lookup_service_pb2.ListSharedPatientsRequest(parent="practices/demo", page_token=token)
        assert await refused(patients.ListSharedPatients(shared, metadata=as_partner("alpha"))) == ["page_token"]
        reader = reader_service_pb2_grpc.ReaderServiceStub(channel)
        slots = reader_service_pb2.FindSlotsRequest(
            parent="practices/demo",
            appointment_type="practices/demo/appointmentTypes/kontrolle",
            window=time_pb2.TimeInterval(start_time=near(NOW), end_time=near(NOW + 86400)),
            page_token=token,
        )
        assert await refused(reader.FindSlots(slots, metadata=as_partner("alpha"))) == ["page_token"]


@pytest.mark.parametrize("cursor", ["c1-١٢٣", "c1-" + "9" * 5000, "c1-" + "9" * 40, "c1--1", "c1-1_000", "x" * 600])
async def test_watch_cursors_no_gateway_issued_end_the_stream_with_invalid_argument(
    channel: grpc.aio.Channel, cursor: str
) -> None:
    stub = reader_service_pb2_grpc.ReaderServiceStub(channel)
    stream = stub.WatchChanges(reader_service_pb2.WatchChangesRequest(parent="practices/demo", cursor=cursor))

    async def first() -> Any:
        async for item in stream:
            return item
        return None

    assert await refused(first()) == ["cursor"]


async def test_more_columns_than_any_practice_has_are_refused_at_once(channel: grpc.aio.Channel) -> None:
    """40,000 column names once stalled the gateway for seconds (a quadratic duplicate check)."""
    stub = reader_service_pb2_grpc.ReaderServiceStub(channel)
    names = [f"practices/demo/columns/c{i}" for i in range(40_000)]
    window = time_pb2.TimeInterval(start_time=near(NOW), end_time=near(NOW + 86400))
    request = reader_service_pb2.ListBusyTimesRequest(parent="practices/demo", window=window, columns=names)
    # Over the partner request size first; just under it, the count limit names the field.
    assert request.ByteSize() > 64 * 1024
    await refused(stub.ListBusyTimes(request, timeout=10), grpc.StatusCode.RESOURCE_EXHAUSTED)
    del request.columns[2_000:]
    assert await refused(stub.ListBusyTimes(request, timeout=10)) == ["columns"]
    del request.columns[MAX_COLUMNS:]
    request.columns[-1] = request.columns[0]  # exactly the limit, with a duplicate at the end
    assert await refused(stub.ListBusyTimes(request, timeout=10)) == [f"columns[{MAX_COLUMNS - 1}]"]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_too_many_contacts_are_refused_and_nothing_is_stored(backend: str, tmp_path: Path) -> None:
    async with booking_env(backend, tmp_path) as env, grpc.aio.insecure_channel(env.gateway.address) as channel:
        database = sqlite3.connect(env.database_path)
        patients_before = database.execute("SELECT COUNT(*) FROM patients").fetchone()
        stub = patient_lookup_service_pb2_grpc.PatientLookupServiceStub(channel)
        request = patient_lookup_service_pb2.FindOrCreatePatientRequest(
            parent="practices/demo",
            request_id="many-contacts",
            given_name="Erika",
            family_name="Neu",
            birth_date=time_pb2.Date(year=1990, month=1, day=1),
            contacts=[
                patient_pb2.Contact(kind=patient_pb2.CONTACT_KIND_EMAIL, value=f"e{i}@example.org")
                for i in range(MAX_CONTACTS + 1)
            ],
        )
        assert await refused(stub.FindOrCreatePatient(request, metadata=as_partner("alpha"))) == ["contacts"]
        assert database.execute("SELECT COUNT(*) FROM patients").fetchone() == patients_before
        del request.contacts[MAX_CONTACTS:]
        created = await stub.FindOrCreatePatient(request, metadata=as_partner("alpha"))
        assert len(created.patient.contacts) == MAX_CONTACTS
        database.close()


async def test_a_request_over_the_partner_size_limit_is_resource_exhausted(channel: grpc.aio.Channel) -> None:
    stub = patient_lookup_service_pb2_grpc.PatientLookupServiceStub(channel)
    request = patient_lookup_service_pb2.FindOrCreatePatientRequest(
        parent="practices/demo", request_id="big", given_name="E" * 70_000, family_name="M"
    )
    await refused(stub.FindOrCreatePatient(request, timeout=10), grpc.StatusCode.RESOURCE_EXHAUSTED)


class _EndlessStream:
    """A streaming handler as grpc registers it: yields until its consumer goes away."""

    response_serializer = None
    request_deserializer = None

    async def unary_stream(self, request: Any, context: Any) -> AsyncIterator[int]:
        while True:
            yield 1
            await asyncio.sleep(0.01)


async def test_a_stream_dropped_by_its_consumer_closes_without_an_orphaned_task_error(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancelled WatchChanges stream is closed by asyncio's finaliser in a task of its own; a
    context variable reset there once raised "created in a different Context", and asyncio logged
    "Task exception was never retrieved" for about one stream in ten."""
    authenticator = SignatureAuthenticator.__new__(SignatureAuthenticator)

    async def admitted(handler: Any, raw: bytes, method: str, service: str, context: Any) -> tuple[Any, Verified]:
        return raw, Verified("partner", method)

    monkeypatch.setattr(authenticator, "_admit", admitted)
    wrapped = authenticator._stream(_EndlessStream(), "/otv.v1.ReaderService/WatchChanges", "reader")

    async def opened() -> Any:  # each call runs in a task of its own, as grpc runs it
        stream = wrapped.unary_stream(b"", None)
        await anext(stream)
        return stream

    with caplog.at_level(logging.ERROR):
        streams = [await asyncio.create_task(opened()) for _ in range(10)]
        del streams  # dropped without aclose(): the loop's finaliser closes them
        gc.collect()
        await asyncio.sleep(0.1)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
