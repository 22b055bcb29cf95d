"""PracticeService through the real, signed gRPC stack on both state stores (issue 17).

A partner books in confirmation and manual mode; the practice's PVS, with its own key and the
`practice` grant, watches its inbox, decides, and the partner sees the outcome.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import fake_adapters
import grpc
import pytest
from conftest import AUDIENCE, SECRET, reference_settings
from store_backends import BACKENDS, store_for

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.partners import PartnerRegistry
from otv.v1 import practice_service_pb2 as pb
from otv.v1 import practice_service_pb2_grpc
from otv_sdk.changes import AppointmentChanged
from otv_sdk.client import PartnerClient, signing_interceptors
from otv_sdk.errors import PermissionDenied
from otv_sdk.models import AppointmentState, Contact, ContactKind, Interval
from otv_sdk.ports import PageRequest, PatientQuery, SlotQuery, SlotRequest
from otv_sdk.reference import create_adapter
from otv_sdk.signing import Signer, generate_key_pair

ANCHOR = date.today() + timedelta(days=7 - date.today().weekday() + 7)
DEMO = "practices/demo"


@dataclass
class Env:
    gateway: Gateway
    partner: PartnerClient
    pvs: practice_service_pb2_grpc.PracticeServiceStub
    partner_stub: practice_service_pb2_grpc.PracticeServiceStub
    database: Path

    async def patient(self, family: str = "Mustermann") -> str:
        query = PatientQuery("Erika", family, date(1964, 8, 12), (Contact(ContactKind.EMAIL, "erika@example.org"),))
        patient, _ = await self.partner.find_or_create_patient("demo", query, request_id=str(uuid.uuid4()))
        return patient.id

    async def book(self, patient: str, index: int = 0, type_id: str = "kontrolle") -> Any:
        start = datetime.combine(ANCHOR, datetime.min.time(), UTC)
        columns = ("berg",) if type_id == "kontrolle" else ()
        query = SlotQuery(type_id, Interval(start, start + timedelta(days=7)), columns, PageRequest(200))
        slots = (await self.partner.find_slots("demo", query)).items
        chosen = []
        for slot in slots:
            if all(slot.start >= other.end or slot.column_id != other.column_id for other in chosen):
                chosen.append(slot)
        slot = chosen[index]
        request = SlotRequest(type_id, slot.column_id, slot.start, patient)
        return await self.partner.book_appointment("demo", request, request_id=str(uuid.uuid4()))

    def pvs_entries(self) -> list[str]:
        with sqlite3.connect(self.database) as conn:
            return [r[0] for r in conn.execute("SELECT reference FROM calendar_entries WHERE reference IS NOT NULL")]

    def registry(self) -> PartnerRegistry:
        return PartnerRegistry(self.gateway.router.store)


def _key(registry: PartnerRegistry, partner: str, grants: dict[str, tuple[str, ...]]) -> Signer:
    private, public = generate_key_pair()
    registry.add_partner(partner, f"{partner} GmbH")
    registry.add_key(partner, f"{partner}-1", public)
    for practice, services in grants.items():
        registry.grant(partner, practice, services)
    return Signer(f"{partner}-1", private, AUDIENCE)


@pytest.fixture(params=BACKENDS)
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    database = tmp_path / "pvs.sqlite"
    fake_adapters.SHARED["demo"] = create_adapter(
        "demo", reference_settings(database=str(database), demo_anchor=ANCHOR.isoformat())
    )
    booking = {"mode": "confirmation", "modes": {"pzr": "manual"}, "confirm_within_hours": 1}
    with store_for(request.param, tmp_path) as (store, url):
        store.close()
        config = parse_config(
            {
                "gateway": {
                    "listen": "127.0.0.1:0",
                    "shutdown_grace_seconds": 0,
                    "secret_key": SECRET,
                    "state_store": url,
                    "heartbeat_seconds": 0.5,
                },
                "practices": {
                    "demo": {"adapter": {"plugin": "fake_adapters:shared"}, "booking": booking},
                    "other": {"adapter": {"plugin": "reference", "settings": reference_settings()}},
                },
            }
        )
        gateway = await Gateway.start(config)
        registry = PartnerRegistry(gateway.router.store)
        partner = _key(registry, "alpha", {"demo": ("*",), "other": ("*",)})
        pvs = _key(registry, "demo-pvs", {"demo": ("practice",)})
        try:
            async with (
                PartnerClient.connect(gateway.address, signer=partner) as client,
                grpc.aio.insecure_channel(gateway.address, interceptors=signing_interceptors(pvs)) as pvs_channel,
                grpc.aio.insecure_channel(gateway.address, interceptors=signing_interceptors(partner)) as alpha_channel,
            ):
                yield Env(
                    gateway,
                    client,
                    practice_service_pb2_grpc.PracticeServiceStub(pvs_channel),
                    practice_service_pb2_grpc.PracticeServiceStub(alpha_channel),
                    database,
                )
        finally:
            await gateway.stop(0)
            fake_adapters.SHARED.pop("demo", None)


def _rid() -> str:
    return str(uuid.uuid4())


async def _next_item(stream: Any, timeout: float = 5.0) -> pb.WatchInboxResponse:
    """The next event that is not a heartbeat."""
    while True:
        event: pb.WatchInboxResponse = await asyncio.wait_for(stream.read(), timeout)
        if event.WhichOneof("event") != "heartbeat":
            return event


async def _code(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    code: grpc.StatusCode = raised.value.code()
    return code


async def test_a_pvs_watches_a_booking_arrive_accepts_it_and_the_partner_sees_booked(env: Env) -> None:
    stream = env.pvs.WatchInbox(pb.WatchInboxRequest(parent=DEMO))
    await asyncio.sleep(0.2)  # the watch is open and has sent the (empty) current inbox
    patient = await env.patient()
    booked = await env.book(patient)
    assert booked.state is AppointmentState.PENDING_PRACTICE
    event = await _next_item(stream)
    item = event.item
    assert item.name == f"{DEMO}/appointments/{booked.id}"
    assert item.kind == pb.INBOX_ITEM_KIND_CONFIRMATION
    assert item.partner == "alpha"
    assert item.appointment_type_display_name
    assert item.column_display_name
    assert item.duration.seconds == int((booked.interval.end - booked.interval.start).total_seconds())
    assert (item.patient.given_name, item.patient.family_name) == ("Erika", "Mustermann")
    assert (item.patient.birth_date.year, item.patient.birth_date.month, item.patient.birth_date.day) == (1964, 8, 12)
    assert [c.value for c in item.patient.contacts] == ["erika@example.org"]
    assert env.pvs_entries() == []
    listed = await env.pvs.ListInboxItems(pb.ListInboxItemsRequest(parent=DEMO))
    assert [i.name for i in listed.items] == [item.name]

    accepted = await env.pvs.AcceptBooking(pb.AcceptBookingRequest(name=item.name, request_id=_rid(), etag=item.etag))
    assert accepted.item.state == 3  # APPOINTMENT_STATE_BOOKED
    removed = await _next_item(stream)
    assert removed.removed == item.name
    assert env.pvs_entries() == [booked.id]
    seen = await env.partner.get_appointment("demo", booked.id)
    assert seen.state is AppointmentState.BOOKED
    stream.cancel()

    # Resuming after the cursor of the item's arrival replays its removal.
    resumed = env.pvs.WatchInbox(pb.WatchInboxRequest(parent=DEMO, cursor=event.cursor))
    again = await _next_item(resumed)
    assert again.removed == item.name
    resumed.cancel()
    audit = await env.pvs.ListAuditEntries(pb.ListAuditEntriesRequest(parent=DEMO, action="accept"))
    assert [(e.partner, e.subject, e.outcome) for e in audit.entries] == [("alpha", booked.id, "ok by pvs:demo-pvs")]


async def test_the_partner_feed_announces_the_decisions(env: Env) -> None:
    patient = await env.patient()
    first = await env.book(patient, 0)
    second = await env.book(patient, 1)
    feed = env.partner.watch_changes("demo")
    seen: dict[str, Any] = {}

    async def follow() -> None:
        async for event in feed:
            if isinstance(event.change, AppointmentChanged):
                seen[event.change.appointment.id] = event.change.appointment
                if len(seen) == 2 and all(a.state is not AppointmentState.PENDING_PRACTICE for a in seen.values()):
                    return

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.3)
    items = {
        i.name.rsplit("/", 1)[1]: i for i in (await env.pvs.ListInboxItems(pb.ListInboxItemsRequest(parent=DEMO))).items
    }
    await env.pvs.AcceptBooking(
        pb.AcceptBookingRequest(name=items[first.id].name, request_id=_rid(), etag=items[first.id].etag)
    )
    await env.pvs.RejectBooking(
        pb.RejectBookingRequest(
            name=items[second.id].name, request_id=_rid(), etag=items[second.id].etag, reason="Praxis geschlossen"
        )
    )
    await asyncio.wait_for(task, 10)
    assert seen[first.id].state is AppointmentState.BOOKED
    assert seen[second.id].state is AppointmentState.REJECTED
    assert seen[second.id].reject_reason == "Praxis geschlossen"


async def test_reject_releases_the_time_and_the_partner_sees_the_reason(env: Env) -> None:
    patient = await env.patient()
    booked = await env.book(patient)
    (item,) = (await env.pvs.ListInboxItems(pb.ListInboxItemsRequest(parent=DEMO))).items
    request = pb.RejectBookingRequest(name=item.name, request_id=_rid(), etag=item.etag, reason="Urlaub")
    await env.pvs.RejectBooking(request)
    await env.pvs.RejectBooking(request)  # a retry with the same request_id answers the same
    seen = await env.partner.get_appointment("demo", booked.id)
    assert (seen.state, seen.reject_reason) == (AppointmentState.REJECTED, "Urlaub")
    again = await env.book(patient)  # the same time is free again
    assert again.interval == booked.interval
    assert env.pvs_entries() == []


async def test_an_undecided_confirmation_is_rejected_by_itself(env: Env) -> None:
    patient = await env.patient()
    booked = await env.book(patient)
    store = env.gateway.router.store
    old = int(datetime.now(UTC).timestamp()) - 2 * 3600
    # Two hours pass (confirm_within_hours = 1): the booking and its claim are as old as that.
    await store.run(lambda tx: tx.execute("UPDATE appointments SET create_s = ? WHERE id = ?", (old, booked.id)))
    await store.run(lambda tx: tx.execute("UPDATE claims SET expire_s = ? WHERE owner = ?", (old + 3600, booked.id)))
    seen = await env.partner.get_appointment("demo", booked.id)
    assert seen.state is AppointmentState.REJECTED
    assert seen.reject_reason == "not confirmed by the practice within 1 hours"
    assert (await env.pvs.ListInboxItems(pb.ListInboxItemsRequest(parent=DEMO))).items == []
    again = await env.book(patient)
    assert again.interval == booked.interval


async def test_a_manual_booking_is_marked_transferred(env: Env) -> None:
    patient = await env.patient()
    booked = await env.book(patient, type_id="pzr")
    assert booked.state is AppointmentState.PENDING_TRANSFER
    (item,) = (await env.pvs.ListInboxItems(pb.ListInboxItemsRequest(parent=DEMO))).items
    assert item.kind == pb.INBOX_ITEM_KIND_TRANSFER
    assert (
        await _code(env.pvs.AcceptBooking(pb.AcceptBookingRequest(name=item.name, request_id=_rid(), etag=item.etag)))
        == grpc.StatusCode.FAILED_PRECONDITION
    )
    done = await env.pvs.MarkBookingTransferred(
        pb.MarkBookingTransferredRequest(name=item.name, request_id=_rid(), etag=item.etag, pvs_id="T-42")
    )
    assert done.item.state == 3
    assert (await env.partner.get_appointment("demo", booked.id)).state is AppointmentState.BOOKED
    assert (await env.pvs.ListInboxItems(pb.ListInboxItemsRequest(parent=DEMO))).items == []


async def test_a_withdrawn_licence_takes_effect_on_the_next_call(env: Env) -> None:
    licences = (await env.pvs.ListPartnerLicences(pb.ListPartnerLicencesRequest(parent=DEMO))).licences
    assert [(lic.partner, lic.display_name, len(lic.services)) for lic in licences] == [("alpha", "alpha GmbH", 4)]
    await env.patient()  # allowed
    updated = await env.pvs.UpdatePartnerLicence(
        pb.UpdatePartnerLicenceRequest(
            parent=DEMO, request_id=_rid(), partner="alpha", services=[pb.PARTNER_SERVICE_READER]
        )
    )
    assert list(updated.licence.services) == [pb.PARTNER_SERVICE_READER]
    with pytest.raises(PermissionDenied):
        await env.patient()
    await env.partner.get_practice("demo")  # the reader stays
    assert (
        await _code(
            env.pvs.UpdatePartnerLicence(
                pb.UpdatePartnerLicenceRequest(
                    parent=DEMO, request_id=_rid(), partner="demo-pvs", services=[pb.PARTNER_SERVICE_READER]
                )
            )
        )
        == grpc.StatusCode.NOT_FOUND
    )
    audit = await env.pvs.ListAuditEntries(pb.ListAuditEntriesRequest(parent=DEMO, action="licence"))
    assert [(e.partner, e.subject) for e in audit.entries] == [("alpha", "reader")]


async def test_misuse_gets_clear_statuses_and_changes_nothing(env: Env) -> None:
    patient = await env.patient()
    booked = await env.book(patient)
    (item,) = (await env.pvs.ListInboxItems(pb.ListInboxItemsRequest(parent=DEMO))).items
    denied = grpc.StatusCode.PERMISSION_DENIED
    # A partner key may not call PracticeService at all, even with `*`.
    assert await _code(env.partner_stub.ListInboxItems(pb.ListInboxItemsRequest(parent=DEMO))) == denied
    assert (
        await _code(
            env.partner_stub.AcceptBooking(pb.AcceptBookingRequest(name=item.name, request_id=_rid(), etag=item.etag))
        )
        == denied
    )
    # A practice's PVS may not act on another practice.
    assert await _code(env.pvs.ListInboxItems(pb.ListInboxItemsRequest(parent="practices/other"))) == denied
    other = f"practices/other/appointments/{booked.id}"
    assert await _code(env.pvs.AcceptBooking(pb.AcceptBookingRequest(name=other, request_id=_rid()))) == denied
    # Unknown ids, bad tokens, stale etags.
    assert (
        await _code(env.pvs.AcceptBooking(pb.AcceptBookingRequest(name=f"{DEMO}/appointments/nope", request_id=_rid())))
        == grpc.StatusCode.NOT_FOUND
    )
    assert (
        await _code(env.pvs.ListAuditEntries(pb.ListAuditEntriesRequest(parent=DEMO, page_token="x")))
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert (
        await _code(env.pvs.ListInboxItems(pb.ListInboxItemsRequest(parent=DEMO, page_token="x")))
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    bad_cursor = env.pvs.WatchInbox(pb.WatchInboxRequest(parent=DEMO, cursor="nonsense"))
    assert await _code(bad_cursor.read()) == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        await _code(env.pvs.AcceptBooking(pb.AcceptBookingRequest(name=item.name, request_id=_rid(), etag="999")))
        == grpc.StatusCode.ABORTED
    )
    assert (
        await _code(env.pvs.AcceptBooking(pb.AcceptBookingRequest(name=item.name, request_id="")))
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert (
        await _code(env.pvs.RejectBooking(pb.RejectBookingRequest(name=item.name, request_id=_rid(), etag=item.etag)))
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    # Nothing changed so far.
    assert (await env.partner.get_appointment("demo", booked.id)).state is AppointmentState.PENDING_PRACTICE
    (still,) = (await env.pvs.ListInboxItems(pb.ListInboxItemsRequest(parent=DEMO))).items
    assert still.etag == item.etag
    # Deciding twice.
    await env.pvs.AcceptBooking(pb.AcceptBookingRequest(name=item.name, request_id=_rid(), etag=item.etag))
    assert (
        await _code(env.pvs.AcceptBooking(pb.AcceptBookingRequest(name=item.name, request_id=_rid(), etag=item.etag)))
        == grpc.StatusCode.FAILED_PRECONDITION
    )
    assert (
        await _code(
            env.pvs.RejectBooking(
                pb.RejectBookingRequest(name=item.name, request_id=_rid(), etag=item.etag, reason="x")
            )
        )
        == grpc.StatusCode.FAILED_PRECONDITION
    )
    assert (await env.partner.get_appointment("demo", booked.id)).state is AppointmentState.BOOKED
    assert env.pvs_entries() == [booked.id]
