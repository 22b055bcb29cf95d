"""Slot-list uploads (DURIA, seed 002) and reconciliation of manual bookings from the next upload,
through a real signed gateway: gRPC and HTTP + JSON with the real curl, both state stores."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import PARTNER_ID, SECRET, register_test_partner, signer
from google.protobuf import json_format
from store_backends import BACKENDS, store_for
from test_snapshot_upload import PVS_ID, PVS_PUBLIC, at, pvs_signer, raw_interval, span

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.partners import PartnerRegistry
from gateway.practice_desk import practice_desk
from gateway.state_store import Tx
from otv.v1 import snapshot_service_pb2, snapshot_service_pb2_grpc
from otv_rules.wallclock import zone
from otv_sdk import conversion as cv
from otv_sdk import models
from otv_sdk.changes import AppointmentChanged, BusyTimeChanged, ChangeEvent, Heartbeat
from otv_sdk.client import PartnerClient, signing_interceptors
from otv_sdk.models import Appointment, AppointmentState, Interval
from otv_sdk.ports import PageRequest, SlotQuery, SlotRequest
from otv_sdk.status import error_from_rpc_error

BERLIN = zone("Europe/Berlin")
EVERY_DAY = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DURIA = {
    "display_name": "Zahnarztpraxis DURIA",
    "window_days": 14,
    "upload_interval_seconds": 120,
    "slot_list": True,
    "columns": [
        {"id": f"col-{n}", "display_name": f"Dr. {n}", "weekly_hours": [f"{d} 08:00-12:00" for d in EVERY_DAY]}
        for n in range(1, 5)
    ],
    "appointment_types": [
        {"id": "kontrolle", "display_name": "Kontrolle", "minutes": 20, "columns": ["col-1", "col-2"]},
    ],
}
PLAIN = {
    "display_name": "Praxis ohne Slotliste",
    "window_days": 14,
    "columns": [{"id": "dr-a", "display_name": "Dr. A", "weekly_hours": [f"{d} 08:00-12:00" for d in EVERY_DAY]}],
}


@dataclass
class Env:
    gateway: Gateway
    partner: PartnerClient
    uploads: snapshot_service_pb2_grpc.SnapshotServiceStub
    day: datetime  # a day inside the window, far from midnight

    @property
    def today(self) -> Any:
        return datetime.now(BERLIN).date()

    def window(self, practice: str = "duria") -> Interval:
        return Interval(at(self.today, 0), at(self.today + timedelta(days=14), 0))

    def request(
        self,
        busy: dict[str, Sequence[Interval]],
        slots: dict[str, Sequence[Interval]] | None = None,
        practice: str = "duria",
    ) -> snapshot_service_pb2.UploadSnapshotRequest:
        slots = slots or {}
        return snapshot_service_pb2.UploadSnapshotRequest(
            parent=f"practices/{practice}",
            request_id=str(uuid.uuid4()),
            window=cv.interval_to_proto(self.window(practice)),
            columns=[
                snapshot_service_pb2.ColumnSnapshot(
                    column=f"practices/{practice}/columns/{column}",
                    busy_times=[cv.interval_to_proto(i) for i in busy.get(column, ())],
                    free_slots=[cv.interval_to_proto(i) for i in slots.get(column, ())],
                )
                for column in dict.fromkeys([*busy, *slots])
            ],
        )

    async def upload(
        self,
        busy: dict[str, Sequence[Interval]],
        slots: dict[str, Sequence[Interval]] | None = None,
        transport: str = "grpc",
    ) -> dict[str, Any]:
        request = self.request(busy, slots)
        if transport == "grpc":
            return json_format.MessageToDict(await self.uploads.UploadSnapshot(request))
        status, answer = await asyncio.to_thread(curl, self, "duria", "snapshot:upload", to_json(request))
        assert status == 200, answer
        return answer

    async def offered(self, column: str = "col-1") -> list[datetime]:
        day = self.day.date()
        query = SlotQuery(
            "kontrolle", Interval(at(day, 0), at(day + timedelta(days=1), 0)), (column,), PageRequest(500)
        )
        return [slot.start for slot in (await self.partner.find_slots("duria", query)).items]

    async def book(self, start: datetime, column: str = "col-1") -> Appointment:
        """A manual booking (the PVS has no writer): with the patient's details where the SDK
        has them (a practice without patient lookup), else with a partner-scoped patient id."""
        details = getattr(models, "PatientDetails", None)
        if details is not None and "patient_details" in SlotRequest.__dataclass_fields__:
            patient = details("Erika", "Mustermann", date(1970, 5, 17))
            slot = SlotRequest("kontrolle", column, start, "", patient_details=patient)  # type: ignore[call-arg]
        else:
            scoped = self.gateway.router._scope.to_partner(PARTNER_ID, f"duria-patient-{uuid.uuid4().hex[:6]}")
            slot = SlotRequest("kontrolle", column, start, scoped)
        return await self.partner.book_appointment("duria", slot)


def to_json(request: snapshot_service_pb2.UploadSnapshotRequest) -> bytes:
    return json_format.MessageToJson(request).encode()


def curl(env: Env, practice: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """POST with the real curl, signed as the PVS, as DURIA's CURL.EXE does."""
    method = "/otv.v1.SnapshotService/" + ("UploadSnapshot" if path.endswith(":upload") else "GetUploadWindow")
    assert env.gateway.http is not None
    url = f"http://127.0.0.1:{env.gateway.http.port}/v1/practices/{practice}/{path}"
    args = ["curl", "-sS", "-X", "POST", "--data-binary", "@-", "-H", "Content-Type: application/json"]
    for name, value in pvs_signer().headers(method, body):
        args += ["-H", f"{name}: {value}"]
    done = subprocess.run([*args, "-w", "\n%{http_code}", url], input=body, capture_output=True, check=True)
    text, _, status = done.stdout.decode().rpartition("\n")
    return int(status), json.loads(text)


@pytest.fixture(params=BACKENDS)
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    with store_for(request.param, tmp_path) as (store, url):
        store.close()
        config = parse_config(
            {
                "gateway": {
                    "listen": "127.0.0.1:0",
                    "http_listen": "127.0.0.1:0",
                    "shutdown_grace_seconds": 0,
                    "secret_key": SECRET,
                    "state_store": url,
                },
                "practices": {"duria": {"adapter": {"snapshot": DURIA}}, "plain": {"adapter": {"snapshot": PLAIN}}},
            }
        )
        started = await Gateway.start(config)
        register_test_partner(started)
        registry = PartnerRegistry(started.router.store)
        registry.add_partner(PVS_ID)
        registry.add_key(PVS_ID, "duria-pvs-1", PVS_PUBLIC)
        registry.grant(PVS_ID, "duria", ("snapshot",))
        registry.grant(PVS_ID, "plain", ("snapshot",))
        channel = grpc.aio.insecure_channel(started.address, interceptors=signing_interceptors(pvs_signer()))
        day = datetime.now(BERLIN).date() + timedelta(days=2)
        try:
            async with PartnerClient.connect(started.address, signer=signer()) as partner:
                yield Env(started, partner, snapshot_service_pb2_grpc.SnapshotServiceStub(channel), at(day, 0))
        finally:
            await channel.close()
            await started.stop(0)


async def take(events: AsyncIterator[ChangeEvent], count: int, kind: type = object) -> list[ChangeEvent]:
    taken: list[ChangeEvent] = []
    async with asyncio.timeout(10):
        async for event in events:
            if not isinstance(event.change, Heartbeat) and isinstance(event.change, kind):
                taken.append(event)
            if len(taken) == count:
                break
    return taken


async def told_booked(env: Env, cursor: str, appointment_id: str) -> Appointment:
    """The partner's feed after `cursor` tells it the booking is BOOKED."""
    async with asyncio.timeout(10):
        async for event in env.partner.watch_changes("duria", (), cursor):
            change = event.change
            mine = isinstance(change, AppointmentChanged) and change.appointment.id == appointment_id
            if mine and isinstance(change, AppointmentChanged) and change.appointment.state is AppointmentState.BOOKED:
                return change.appointment
    raise AssertionError("the feed ended")


def slots(day: datetime, *starts: tuple[int, int], minutes: int = 30) -> list[Interval]:
    return [span(day.date(), hour, minutes, minute) for hour, minute in starts]


# --- slot lists and the offer ------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["grpc", "http"])
async def test_only_the_pvs_free_slots_are_offered_and_a_deleted_one_disappears(env: Env, transport: str) -> None:
    d = env.day
    free = slots(d, (8, 0), (8, 30), (10, 0), (11, 45), (13, 0))  # 11:45 runs past the hours, 13:00 outside them
    first = await env.upload({"col-1": [span(d.date(), 9)], "col-2": []}, {"col-1": free}, transport)
    assert first.get("addedCount") == 1
    assert await env.offered() == [at(d.date(), 8), at(d.date(), 8, 30), at(d.date(), 10)]
    assert await env.offered("col-2") == []  # uploaded without free slots: nothing is free there
    # the practice deleted the free slot at 08:30
    second = await env.upload({"col-1": [span(d.date(), 9)]}, {"col-1": [s for s in free if s != free[1]]}, transport)
    assert await env.offered() == [at(d.date(), 8), at(d.date(), 10)]
    # partners following busy time see it as busy time added (the gap before 10:00 grew)
    assert second["changeCursor"] != first["changeCursor"]
    (event,) = await take(env.partner.watch_changes("duria", ("col-1",), first["changeCursor"]), 1)
    assert event.change == BusyTimeChanged(
        "col-1",
        added=(Interval(at(d.date(), 8, 30), at(d.date(), 10)),),
        removed=(Interval(at(d.date(), 9), at(d.date(), 10)),),
    )
    (busy,) = await env.partner.list_busy_times("duria", Interval(at(d.date(), 8), at(d.date(), 12)), ["col-1"])
    free_now = await env.partner.get_free_time("duria", Interval(at(d.date(), 8), at(d.date(), 12)), ["col-1"])
    assert list(free_now[0].intervals.intervals()) == [
        Interval(at(d.date(), 8), at(d.date(), 8, 30)),
        Interval(at(d.date(), 10), at(d.date(), 10, 30)),
        Interval(at(d.date(), 11, 45), at(d.date(), 12)),
    ]
    assert Interval(at(d.date(), 8, 30), at(d.date(), 10)) in list(busy.intervals.intervals())


async def test_the_window_says_the_practice_takes_slot_lists(env: Env) -> None:
    status, answer = await asyncio.to_thread(curl, env, "duria", "snapshot:window", b"{}")
    assert (status, answer["slotList"]) == (200, True)
    status, answer = await asyncio.to_thread(curl, env, "plain", "snapshot:window", b"{}")
    assert status == 200
    assert "slotList" not in answer  # false: busy times only


async def test_a_practice_without_slot_list_offers_from_its_hours_as_before(env: Env) -> None:
    request = env.request({"dr-a": []}, practice="plain")
    await env.uploads.UploadSnapshot(request)
    day = env.day.date()
    (free,) = await env.partner.get_free_time("plain", Interval(at(day, 0), at(day + timedelta(days=1), 0)))
    assert list(free.intervals.intervals()) == [Interval(at(day, 8), at(day, 12))]


# --- bad input: the field is named and nothing is applied -------------------------------------------


async def stored_state(env: Env) -> tuple[list[dict[str, Any]], ...]:
    def read(tx: Tx) -> tuple[list[dict[str, Any]], ...]:
        return (
            tx.all("SELECT * FROM snapshot_columns ORDER BY practice, column_id"),
            tx.all("SELECT * FROM snapshot_slots ORDER BY practice, column_id"),
            tx.all("SELECT * FROM snapshot_uploads ORDER BY practice"),
            tx.all("SELECT practice, seq, column_id, body FROM change_events ORDER BY practice, seq"),
            tx.all("SELECT id, state, version FROM appointments ORDER BY id"),
        )

    return await env.gateway.router.store.run(read)


def _bad(env: Env, case: str) -> tuple[snapshot_service_pb2.UploadSnapshotRequest, str]:
    d = env.day.date()
    good = slots(env.day, (8, 0), (9, 0))
    window = env.window()
    lo, hi = int(window.start.timestamp()), int(window.end.timestamp())
    if case == "slot before the window":
        return env.request({}, {"col-1": [*good, Interval(window.start - timedelta(hours=1), window.start)]}), (
            "columns[0].free_slots[2]"
        )
    if case == "slot across the end of the window":
        across = Interval(window.end - timedelta(minutes=15), window.end + timedelta(minutes=15))
        return env.request({}, {"col-1": good, "col-2": [across]}), "columns[1].free_slots[0]"
    if case == "overlapping slots":
        return env.request({"col-1": []}, {"col-2": [*good, span(d, 10), span(d, 8, 30, 15)]}), (
            "columns[1].free_slots[3]"
        )
    if case == "the same slot twice":
        return env.request({}, {"col-1": [span(d, 10), *good, span(d, 10)]}), "columns[0].free_slots[3]"
    if case == "slot longer than a day":
        return env.request({}, {"col-1": [*good, Interval(at(d, 8), at(d + timedelta(days=1), 9))]}), (
            "columns[0].free_slots[2]"
        )
    if case == "slot list for a practice not configured for it":
        return env.request({"dr-a": []}, {"dr-a": [span(d, 9)]}, practice="plain"), "columns[0].free_slots"
    if case == "slot ending before it starts (gRPC)":
        request = env.request({}, {"col-1": good})
        request.columns[0].free_slots.append(raw_interval(lo + 120, lo + 60))
        return request, "columns[0].free_slots[2].end_time"
    if case == "sub-second slot that rounds to nothing (gRPC)":
        request = env.request({}, {"col-1": good})
        request.columns[0].free_slots.append(raw_interval(hi - 60, hi - 60, 100_000_000, 900_000_000))
        return request, "columns[0].free_slots[2]"
    raise AssertionError(case)


BAD = [
    "slot before the window",
    "slot across the end of the window",
    "overlapping slots",
    "the same slot twice",
    "slot longer than a day",
    "slot list for a practice not configured for it",
]
BAD_GRPC_ONLY = ["slot ending before it starts (gRPC)", "sub-second slot that rounds to nothing (gRPC)"]


@pytest.mark.parametrize(
    ("case", "transport"), [(c, t) for c in BAD for t in ("grpc", "http")] + [(c, "grpc") for c in BAD_GRPC_ONLY]
)
async def test_a_bad_slot_list_names_the_field_and_changes_nothing(env: Env, case: str, transport: str) -> None:
    await env.upload({"col-1": [span(env.day.date(), 11)]}, {"col-1": slots(env.day, (8, 0))})
    await env.uploads.UploadSnapshot(env.request({"dr-a": [span(env.day.date(), 9)]}, practice="plain"))
    before = await stored_state(env)
    request, field = _bad(env, case)
    if transport == "grpc":
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await env.uploads.UploadSnapshot(request)
        assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
        fields = [v.field for v in error_from_rpc_error(raised.value).violations]
    else:
        practice = request.parent.removeprefix("practices/")
        status, answer = await asyncio.to_thread(curl, env, practice, "snapshot:upload", to_json(request))
        assert (status, answer["code"]) == (400, "INVALID_ARGUMENT"), answer
        fields = [v["field"] for v in answer["fieldViolations"]]
    assert fields == [field]
    assert await stored_state(env) == before
    assert await env.offered() == [at(env.day.date(), 8)]


# --- reconciliation: the next upload shows the booking entered by hand ------------------------------


async def inbox_ids(env: Env) -> list[str]:
    desk = await practice_desk(env.gateway.router, "duria")
    return [item.appointment_id for item in await desk.inbox()]


@pytest.mark.parametrize("transport", ["grpc", "http"])
async def test_a_booking_entered_by_hand_is_transferred_by_the_next_upload(env: Env, transport: str) -> None:
    d = env.day.date()
    free = slots(env.day, (9, 0), (10, 0), (11, 0))
    await env.upload({"col-1": []}, {"col-1": free}, transport)
    booked = await env.book(at(d, 10))
    assert booked.state is AppointmentState.PENDING_TRANSFER
    assert await inbox_ids(env) == [booked.id]
    # an upload before staff entered it: the slot is still free in the PVS, the time stays claimed
    before = await env.upload({"col-1": []}, {"col-1": free}, transport)
    assert await env.offered() == [at(d, 9), at(d, 11)]
    assert (await env.partner.get_appointment("duria", booked.id)).state is AppointmentState.PENDING_TRANSFER
    # staff entered it with its length into the free slot: the next upload shows it as busy time
    after = await env.upload({"col-1": [Interval(at(d, 10), at(d, 10, 20))]}, {"col-1": [free[0], free[2]]}, transport)
    assert after.get("addedCount") == 1
    now = await env.partner.get_appointment("duria", booked.id)
    assert now.state is AppointmentState.BOOKED
    assert await inbox_ids(env) == []
    told = await told_booked(env, before["changeCursor"], booked.id)
    assert told.id == booked.id
    decision = await env.gateway.router.store.run(
        lambda tx: tx.one("SELECT action, actor FROM decisions WHERE appointment_id = ?", (booked.id,))
    )
    assert decision == {"action": "transfer", "actor": "upload"}
    assert await env.offered() == [at(d, 9), at(d, 11)]
    # the same upload again changes nothing
    again = await env.upload({"col-1": [Interval(at(d, 10), at(d, 10, 20))]}, {"col-1": [free[0], free[2]]})
    assert again.get("addedCount", 0) == 0


async def test_one_busy_time_over_two_bookings_stays_for_staff_until_it_is_told_apart(env: Env) -> None:
    d = env.day.date()
    free = slots(env.day, (10, 0), (10, 20), minutes=20)
    await env.upload({"col-1": []}, {"col-1": free})
    first, second = await env.book(at(d, 10)), await env.book(at(d, 10, 20))
    both = Interval(at(d, 10), at(d, 10, 40))
    await env.upload({"col-1": [both]}, {"col-1": []})
    assert sorted(await inbox_ids(env)) == sorted([first.id, second.id])
    for booking in (first, second):
        assert (await env.partner.get_appointment("duria", booking.id)).state is AppointmentState.PENDING_TRANSFER
    # staff split the entry into the two bookings: now each new busy time is one of them
    await env.upload({"col-1": [Interval(at(d, 10), at(d, 10, 20)), Interval(at(d, 10, 20), at(d, 10, 40))]})
    assert await inbox_ids(env) == []
    for booking in (first, second):
        assert (await env.partner.get_appointment("duria", booking.id)).state is AppointmentState.BOOKED


@pytest.mark.parametrize(
    "entered",
    [
        pytest.param((10, 10, 30), id="only partly covered"),
        pytest.param((8, 0, 240), id="a reservation over the whole morning"),
        pytest.param((10, 20, 20), id="next to it"),
    ],
)
async def test_busy_time_that_is_not_the_booking_leaves_it_for_staff(env: Env, entered: tuple[int, int, int]) -> None:
    d = env.day.date()
    await env.upload({"col-1": []}, {"col-1": slots(env.day, (10, 0))})
    booked = await env.book(at(d, 10))
    hour, minute, minutes = entered
    await env.upload({"col-1": [span(d, hour, minutes, minute)]}, {"col-1": []})
    assert await inbox_ids(env) == [booked.id]
    assert (await env.partner.get_appointment("duria", booked.id)).state is AppointmentState.PENDING_TRANSFER
    assert await env.offered() == []


async def test_busy_time_in_another_column_does_not_transfer(env: Env) -> None:
    d = env.day.date()
    await env.upload({"col-1": [], "col-2": []}, {"col-1": slots(env.day, (10, 0)), "col-2": slots(env.day, (10, 0))})
    booked = await env.book(at(d, 10))
    await env.upload({"col-2": [Interval(at(d, 10), at(d, 10, 20))]}, {"col-2": []})
    assert await inbox_ids(env) == [booked.id]


def test_reading_a_column_from_its_encoding_agrees_with_reading_each_message() -> None:
    """The service decodes the common encoding as arrays (snapshot_service._wire_rows); anything
    else falls back to the per-message read. Both must give the same intervals."""
    import random

    from gateway.snapshot_service import _intervals, _wire_rows

    rng = random.Random(18)
    for case in range(200):
        column = snapshot_service_pb2.ColumnSnapshot(
            column="" if case % 7 == 0 else "practices/p/columns/c" * (case % 9)
        )
        for items in (column.busy_times, column.free_slots):
            for _ in range(rng.randrange(0, 30)):
                start = rng.choice(
                    [1_800_000_000, 300_000_000, 100_000_000, 7_000_000_000, 1_700_000_000]
                ) + rng.randrange(10**6)
                item = items.add()
                item.start_time.seconds, item.end_time.seconds = start, start + rng.randrange(1, 7200)
                if rng.random() < 0.05:
                    item.end_time.nanos = rng.randrange(1, 10**9)
        busy, slots = _wire_rows(column)
        assert _intervals(column.busy_times, "b", busy) == _intervals(column.busy_times, "b")
        inward = _intervals(column.free_slots, "s", inward=True)
        assert _intervals(column.free_slots, "s", slots, inward=True) == inward


# --- seed 002 end to end ----------------------------------------------------------------------------


async def test_seed_002_end_to_end_with_curl(env: Env) -> None:
    """DURIA + a booking partner as seed 002 describes it, the PVS side only with the real curl:
    the window, an upload of busy times and free slots for 4 columns, a partner offered exactly the
    PVS's free slots, a booking with the patient's details, the inbox showing all of them, the next
    upload with the hand-entered appointment transferring it (the partner's feed says BOOKED), and a
    slot the practice deleted gone from the offer after the upload after."""
    status, window = await asyncio.to_thread(curl, env, "duria", "snapshot:window", b"{}")
    assert status == 200, window
    assert window["slotList"] is True
    d = env.day.date()
    free = {f"col-{n}": slots(env.day, (8, 0), (9, 0), (10, 0), (11, 0), minutes=20) for n in range(1, 5)}
    busy = {f"col-{n}": [span(d, 8, 20, 30)] for n in range(1, 5)}  # a patient in every column at 08:30
    first = await env.upload(busy, free, "http")
    assert first.get("addedCount") == 4
    # The partner is offered exactly the free slots of the columns its type allows.
    for column in ("col-1", "col-2"):
        assert await env.offered(column) == [at(d, 8), at(d, 9), at(d, 10), at(d, 11)]
    details = models.PatientDetails(
        "Erika",
        "Mustermann",
        date(1970, 5, 17),
        (models.Contact(models.ContactKind.MOBILE, "+491701234567"),),
        gender=models.Gender.FEMALE,
        address=models.PostalAddress("Hauptstraße 1", "10115", "Berlin", "DE"),
        note="Bitte Rückruf am Vormittag",
    )
    booked = await env.partner.book_appointment(
        "duria", SlotRequest("kontrolle", "col-2", at(d, 10), "", patient_details=details)
    )
    assert booked.state is AppointmentState.PENDING_TRANSFER
    desk = await practice_desk(env.gateway.router, "duria")
    (item,) = await desk.inbox()
    assert (item.appointment_id, item.kind, item.column_id, item.start) == (booked.id, "transfer", "col-2", at(d, 10))
    assert item.patient is not None
    shown = item.patient
    assert (shown.given_name, shown.family_name, shown.birth_date) == ("Erika", "Mustermann", date(1970, 5, 17))
    assert (shown.contacts, shown.gender, shown.address, shown.note) == (
        details.contacts,
        details.gender,
        details.address,
        details.note,
    )
    # Staff entered it by hand with its length; the next upload carries it and the slot is gone.
    entered = {**busy, "col-2": [*busy["col-2"], Interval(at(d, 10), at(d, 10, 20))]}
    remaining = {**free, "col-2": [s for s in free["col-2"] if s.start != at(d, 10)]}
    await env.upload(entered, remaining, "http")
    assert (await env.partner.get_appointment("duria", booked.id)).state is AppointmentState.BOOKED
    assert (await told_booked(env, first["changeCursor"], booked.id)).id == booked.id
    assert await desk.inbox() == []
    assert await env.offered("col-2") == [at(d, 8), at(d, 9), at(d, 11)]
    # The practice deletes the 09:00 slot of col-1: after the next upload it is no longer offered.
    fewer = {**remaining, "col-1": [s for s in free["col-1"] if s.start != at(d, 9)]}
    await env.upload(entered, fewer, "http")
    assert await env.offered("col-1") == [at(d, 8), at(d, 10), at(d, 11)]
