"""Booking with the patient's details at a practice without patient lookup, and extra patient details.

Through the real gRPC stack: a gateway serving "demo" (reference PVS with patient lookup and a
writer) and "upload" (the same calendar, but no patient lookup and no writer, like an upload-only
PVS). The practice side decides through its desk, which PracticeService and the staff page share.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import fake_adapters
import grpc
import pytest
from booking_env import ANCHOR
from conftest import SECRET, reference_settings
from patient_env import as_partner, header_identity
from store_backends import BACKENDS, store_for
from test_validation import violation

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.patient_ids import PatientIdScope
from gateway.practice_desk import practice_desk
from gateway.practice_service import item_to_proto
from otv.v1 import (
    patient_pb2,
    practice_pb2,
    reader_service_pb2,
    reader_service_pb2_grpc,
    time_pb2,
    writer_service_pb2_grpc,
)
from otv.v1 import writer_service_pb2 as wpb
from otv_sdk.changes import AppointmentChanged
from otv_sdk.client import PartnerClient
from otv_sdk.errors import InvalidArgument
from otv_sdk.models import (
    AppointmentState,
    Contact,
    ContactKind,
    Gender,
    Interval,
    PatientDetails,
    PostalAddress,
    Slot,
)
from otv_sdk.ports import PageRequest, PatientQuery, SlotQuery, SlotRequest
from otv_sdk.reference import create_adapter
from otv_sdk.reference.patients import ReferencePatients, ReferencePractice

ADDRESS = PostalAddress("Neumarkt 2a", "59320", "Ennigerloh", "DE")
DETAILS = PatientDetails(
    given_name="Erika",
    family_name="Mustermann",
    birth_date=date(1964, 8, 12),
    contacts=(Contact(ContactKind.MOBILE, "+491701234567"), Contact(ContactKind.EMAIL, "erika@example.org")),
    gender=Gender.FEMALE,
    address=ADDRESS,
    note="Bitte vormittags",
)


@dataclass
class Env:
    gateway: Gateway
    client: PartnerClient
    channel: grpc.aio.Channel
    practice: ReferencePractice  # the "demo" PVS's own records

    @property
    def writer(self) -> writer_service_pb2_grpc.WriterServiceStub:
        return writer_service_pb2_grpc.WriterServiceStub(self.channel)

    async def slots(self, practice: str, count: int = 5) -> list[Slot]:
        start = datetime.combine(ANCHOR, datetime.min.time(), UTC)
        query = SlotQuery("kontrolle", Interval(start, start + timedelta(days=7)), ("berg",), PageRequest(count))
        return list((await self.client.find_slots(practice, query, metadata=as_partner("alpha"))).items)

    def pvs_id(self, scoped: str) -> str:
        found = PatientIdScope(bytes.fromhex(SECRET)).from_partner("alpha", scoped)
        assert found is not None
        return found


@asynccontextmanager
async def details_env(backend: str, tmp_path: Path) -> AsyncIterator[Env]:
    settings = {"demo_anchor": ANCHOR.isoformat()}
    full = create_adapter("demo", reference_settings(database=str(tmp_path / "demo.sqlite"), **settings))
    bare = create_adapter("upload", reference_settings(database=str(tmp_path / "upload.sqlite"), **settings))
    # An upload-only PVS: a calendar to read, no patient lookup, no writer.
    bare = dataclasses.replace(bare, patients=None, consents=None, calendar_writer=None)
    fake_adapters.SHARED["demo"], fake_adapters.SHARED["upload"] = full, bare
    plugin = {"adapter": {"plugin": "fake_adapters:shared"}}
    with store_for(backend, tmp_path) as (store, url):
        store.close()
        gateway_section = {
            "listen": "127.0.0.1:0",
            "shutdown_grace_seconds": 0,
            "secret_key": SECRET,
            "state_store": url,
        }
        config = parse_config({"gateway": gateway_section, "practices": {"demo": plugin, "upload": plugin}})
        gateway = await Gateway.start(config, identify=header_identity)
        try:
            async with (
                PartnerClient.connect(gateway.address) as client,
                grpc.aio.insecure_channel(gateway.address) as channel,
            ):
                yield Env(gateway, client, channel, cast(ReferencePatients, full.patients).practice)
        finally:
            await gateway.stop(0)
            fake_adapters.SHARED.pop("demo", None)
            fake_adapters.SHARED.pop("upload", None)


def _rid() -> str:
    return str(uuid.uuid4())


def _details_proto(**changes: Any) -> patient_pb2.PatientDetails:
    msg = patient_pb2.PatientDetails(
        given_name="Erika",
        family_name="Mustermann",
        birth_date=time_pb2.Date(year=1964, month=8, day=12),
        contacts=[patient_pb2.Contact(kind=patient_pb2.CONTACT_KIND_MOBILE, value="+491701234567")],
        gender=patient_pb2.GENDER_FEMALE,
        address=patient_pb2.PostalAddress(
            street="Neumarkt 2a", postal_code="59320", locality="Ennigerloh", country="DE"
        ),
        note="Bitte vormittags",
    )
    for name, value in changes.items():
        if value is None:
            msg.ClearField(name)  # type: ignore[arg-type]
        elif isinstance(value, patient_pb2.PostalAddress):
            getattr(msg, name).CopyFrom(value)
        else:
            setattr(msg, name, value)
    return msg


def _book_request(practice: str, slot: Slot, **fields: Any) -> wpb.BookAppointmentRequest:
    from otv_sdk import conversion as cv

    return wpb.BookAppointmentRequest(
        parent=f"practices/{practice}",
        request_id=_rid(),
        appointment_type=f"practices/{practice}/appointmentTypes/kontrolle",
        column=f"practices/{practice}/columns/{slot.column_id}",
        start_time=cv.datetime_to_timestamp(slot.start),
        **fields,
    )


@pytest.mark.parametrize("backend", BACKENDS)
async def test_booking_with_details_goes_to_the_inbox_and_the_partner_sees_it_transferred(
    backend: str, tmp_path: Path
) -> None:
    async with details_env(backend, tmp_path) as env:
        alpha = as_partner("alpha")
        # GetPractice tells the partner which way each practice takes.
        assert (await env.client.get_practice("upload", metadata=alpha)).takes_patient_details
        assert not (await env.client.get_practice("demo", metadata=alpha)).takes_patient_details
        reader = reader_service_pb2_grpc.ReaderServiceStub(env.channel)
        raw = await reader.GetPractice(reader_service_pb2.GetPracticeRequest(name="practices/upload"), metadata=alpha)
        assert raw.practice.patient_identification == practice_pb2.PATIENT_IDENTIFICATION_DETAILS

        slot = (await env.slots("upload"))[0]
        feed = env.client.watch_changes("upload", metadata=alpha)
        final: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def follow() -> None:
            async for event in feed:
                change = event.change
                if isinstance(change, AppointmentChanged) and change.appointment.state is AppointmentState.BOOKED:
                    final.set_result(change.appointment)
                    return

        task = asyncio.create_task(follow())
        await asyncio.sleep(0.3)
        request = SlotRequest("kontrolle", slot.column_id, slot.start, "", DETAILS)
        rid = _rid()
        booked = await env.client.book_appointment("upload", request, request_id=rid, metadata=alpha)
        assert booked.state is AppointmentState.PENDING_TRANSFER
        assert booked.patient_id == ""
        # A retry answers the same; the same request_id with other details is refused.
        again = await env.client.book_appointment("upload", request, request_id=rid, metadata=alpha)
        assert again.id == booked.id
        other = dataclasses.replace(request, patient_details=dataclasses.replace(DETAILS, note="anders"))
        with pytest.raises(InvalidArgument, match="request_id"):
            await env.client.book_appointment("upload", other, request_id=rid, metadata=alpha)
        # The slot is taken for everyone else meanwhile.
        assert slot.start not in [s.start for s in await env.slots("upload", 50)]

        desk = await practice_desk(env.gateway.router, "upload")
        (item,) = await desk.inbox()
        assert item.appointment_id == booked.id
        assert item.kind == "transfer"
        assert item.patient is not None
        assert (item.patient.given_name, item.patient.family_name, item.patient.birth_date) == (
            "Erika",
            "Mustermann",
            date(1964, 8, 12),
        )
        assert item.patient.contacts == DETAILS.contacts
        assert (item.patient.gender, item.patient.address, item.patient.note) == (
            Gender.FEMALE,
            ADDRESS,
            "Bitte vormittags",
        )
        shown = item_to_proto("upload", item).patient
        assert shown.gender == patient_pb2.GENDER_FEMALE
        assert (shown.address.street, shown.address.postal_code, shown.address.locality, shown.address.country) == (
            "Neumarkt 2a",
            "59320",
            "Ennigerloh",
            "DE",
        )
        assert shown.note == "Bitte vormittags"
        assert shown.birth_date.year == 1964

        # Encrypted at rest: no personal value in the store as plain text.
        rows = await env.gateway.router.store.run(lambda tx: tx.all("SELECT details FROM patient_details"))
        assert rows
        assert not any("Mustermann" in str(r["details"]) or "Ennigerloh" in str(r["details"]) for r in rows)

        await desk.mark_transferred("staff:anna", booked.id, item.etag, "T-4711", _rid())
        seen = await asyncio.wait_for(final, 10)
        assert seen.id == booked.id
        assert seen.patient_id == ""
        assert (await env.client.get_appointment("upload", booked.id, metadata=alpha)).state is AppointmentState.BOOKED
        assert await desk.inbox() == []
        task.cancel()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_hold_with_details_is_confirmed_into_the_inbox(backend: str, tmp_path: Path) -> None:
    async with details_env(backend, tmp_path) as env:
        alpha = as_partner("alpha")
        slot = (await env.slots("upload"))[0]
        hold = await env.client.hold_slot(
            "upload", SlotRequest("kontrolle", slot.column_id, slot.start, "", DETAILS), metadata=alpha
        )
        assert hold.patient_id == ""
        confirmed = await env.client.confirm_hold("upload", hold.id, metadata=alpha)
        assert confirmed.state is AppointmentState.PENDING_TRANSFER
        (item,) = await (await practice_desk(env.gateway.router, "upload")).inbox()
        assert item.appointment_id == confirmed.id
        assert item.patient is not None
        assert item.patient.address == ADDRESS
        assert item.patient.note == DETAILS.note


async def test_each_practice_takes_one_way_of_naming_the_patient(tmp_path: Path) -> None:
    async with details_env("sqlite", tmp_path) as env:
        alpha = as_partner("alpha")
        demo_slot, upload_slot = (await env.slots("demo"))[0], (await env.slots("upload"))[0]
        # Details at a practice with patient lookup: refused, naming the field.
        fields = await violation(
            env.writer.BookAppointment(
                _book_request("demo", demo_slot, patient_details=_details_proto()), metadata=alpha
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        assert fields == ["patient_details"]
        hold = wpb.HoldSlotRequest(
            **{
                k: getattr(_book_request("demo", demo_slot), k)
                for k in ("parent", "request_id", "appointment_type", "column", "start_time")
            },
            patient_details=_details_proto(),
        )
        assert await violation(env.writer.HoldSlot(hold, metadata=alpha), grpc.StatusCode.FAILED_PRECONDITION) == [
            "patient_details"
        ]
        # A patient resource at a practice without lookup: refused, naming the field.
        fields = await violation(
            env.writer.BookAppointment(
                _book_request("upload", upload_slot, patient="practices/upload/patients/x1"), metadata=alpha
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        assert fields == ["patient"]
        # Neither, or both.
        assert await violation(
            env.writer.BookAppointment(_book_request("upload", upload_slot), metadata=alpha),
            grpc.StatusCode.INVALID_ARGUMENT,
        ) == ["patient"]
        both = _book_request(
            "upload", upload_slot, patient="practices/upload/patients/x1", patient_details=_details_proto()
        )
        assert await violation(env.writer.BookAppointment(both, metadata=alpha), grpc.StatusCode.INVALID_ARGUMENT) == [
            "patient_details"
        ]
        assert await (await practice_desk(env.gateway.router, "upload")).inbox() == []


BAD_DETAILS = {
    "missing birth date": ({"birth_date": None}, "patient_details.birth_date"),
    "missing family name": ({"family_name": " "}, "patient_details.family_name"),
    "oversize note": ({"note": "x" * 1001}, "patient_details.note"),
    "control characters in the note": ({"note": "a\x07b"}, "patient_details.note"),
    "oversize street": (
        {"address": patient_pb2.PostalAddress(street="s" * 201, country="DE")},
        "patient_details.address.street",
    ),
    "oversize town": (
        {"address": patient_pb2.PostalAddress(locality="o" * 101, country="DE")},
        "patient_details.address.locality",
    ),
    "unknown country": (
        {"address": patient_pb2.PostalAddress(locality="Wien", country="XX")},
        "patient_details.address.country",
    ),
    "lower-case country": ({"address": patient_pb2.PostalAddress(country="de")}, "patient_details.address.country"),
    "address without country": (
        {"address": patient_pb2.PostalAddress(locality="Köln")},
        "patient_details.address.country",
    ),
    "German postcode of four digits": (
        {"address": patient_pb2.PostalAddress(postal_code="5932", country="DE")},
        "patient_details.address.postal_code",
    ),
    "undefined gender": ({"gender": 9}, "patient_details.gender"),
}


@pytest.mark.parametrize("case", list(BAD_DETAILS))
async def test_bad_details_are_refused_naming_the_field_and_nothing_is_applied(case: str, tmp_path: Path) -> None:
    changes, field = BAD_DETAILS[case]
    async with details_env("sqlite", tmp_path) as env:
        alpha = as_partner("alpha")
        slot = (await env.slots("upload"))[0]
        request = _book_request("upload", slot, patient_details=_details_proto(**changes))
        assert await violation(
            env.writer.BookAppointment(request, metadata=alpha), grpc.StatusCode.INVALID_ARGUMENT
        ) == [field]
        assert await (await practice_desk(env.gateway.router, "upload")).inbox() == []
        assert slot.start in [s.start for s in await env.slots("upload", 50)]
        count = await env.gateway.router.store.run(lambda tx: tx.one("SELECT COUNT(*) AS n FROM patient_details"))
        assert count is not None
        assert count["n"] == 0


async def test_find_or_create_refuses_a_bad_address(tmp_path: Path) -> None:
    from otv.v1 import patient_lookup_service_pb2 as lpb
    from otv.v1 import patient_lookup_service_pb2_grpc

    async with details_env("sqlite", tmp_path) as env:
        stub = patient_lookup_service_pb2_grpc.PatientLookupServiceStub(env.channel)
        before = env.practice.count_patients()
        request = lpb.FindOrCreatePatientRequest(
            parent="practices/demo",
            request_id=_rid(),
            given_name="Lea",
            family_name="Neu",
            birth_date=time_pb2.Date(year=1990, month=1, day=2),
            address=patient_pb2.PostalAddress(postal_code="ABCDE", country="DE"),
        )
        assert await violation(
            stub.FindOrCreatePatient(request, metadata=as_partner("alpha")), grpc.StatusCode.INVALID_ARGUMENT
        ) == ["address.postal_code"]
        assert env.practice.count_patients() == before


async def test_extra_details_reach_the_pvs_note_never_over_stored_values(tmp_path: Path) -> None:
    async with details_env("sqlite", tmp_path) as env:
        alpha = as_partner("alpha")
        # A new patient: the extra details in the note it is created with.
        new, _ = await env.client.find_or_create_patient(
            "demo",
            PatientQuery("Lea", "Neumann", date(1990, 1, 2), gender=Gender.DIVERSE, address=ADDRESS),
            metadata=alpha,
        )
        created = env.practice.patient(env.pvs_id(new.id))
        assert "Interessent: online angelegt (alpha)" in created.note
        assert "Geschlecht: divers; Adresse: Neumarkt 2a, 59320 Ennigerloh, DE" in created.note

        # A matched patient: a note line of its own; the stored names and contacts stay as they are.
        existing = env.practice.add_patient(
            "Hans", "Becker", "1950-03-04", (Contact(ContactKind.PHONE, "+4925241234"),)
        )
        query = PatientQuery(
            "Hans", "Becker", date(1950, 3, 4), gender=Gender.MALE, address=PostalAddress("Weg 1", "", "Oelde", "DE")
        )
        found, _ = await env.client.find_or_create_patient("demo", query, metadata=alpha)
        assert env.pvs_id(found.id) == existing
        after = env.practice.patient(existing)
        lines = after.note.splitlines()
        assert len(lines) == 1
        assert lines[0].startswith("Online (alpha, ")
        assert lines[0].endswith("Geschlecht: männlich; Adresse: Weg 1, Oelde, DE")
        assert (after.given_name, after.family_name, after.contacts) == (
            "Hans",
            "Becker",
            (Contact(ContactKind.PHONE, "+4925241234"),),
        )
        # The same details again: no second line; a new address: one more.
        await env.client.find_or_create_patient("demo", query, metadata=alpha)
        assert len(env.practice.patient(existing).note.splitlines()) == 1
        moved = dataclasses.replace(query, address=PostalAddress("Markt 3", "59302", "Oelde", "DE"))
        await env.client.find_or_create_patient("demo", moved, metadata=alpha)
        lines = env.practice.patient(existing).note.splitlines()
        assert len(lines) == 2
        assert lines[1].endswith("Adresse: Markt 3, 59302 Oelde, DE")
        # No extras, no line.
        await env.client.find_or_create_patient(
            "demo", PatientQuery("Hans", "Becker", date(1950, 3, 4)), metadata=alpha
        )
        assert len(env.practice.patient(existing).note.splitlines()) == 2
