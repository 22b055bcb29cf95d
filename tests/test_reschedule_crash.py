"""An interrupted reschedule repairs itself, on both state-store backends.

A gateway process is killed (SIGKILL) at each step of a reschedule: (a) the new appointment
committed, not yet in the PVS; (b) written to the PVS, not yet recorded booked; (c) recorded booked,
the old PVS entry not yet deleted; (d) the old PVS entry deleted, the old one not yet recorded
rescheduled. A gateway restarted on the same store and PVS must then complete the move, both by
its recovery at start alone and, where no recovery ran, by the partner's retry with the same
request_id: the new appointment booked and in the PVS, the old one RESCHEDULED, linked both ways,
its claim gone, its PVS entry deleted and its time offered again (docs/booking.md, Crash safety).
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from booking_env import ANCHOR, booking_env, slot_request
from patient_env import as_partner, header_identity
from store_backends import BACKENDS, store_for
from test_booking_processes import _patient, gateway_process, reference_adapter, write_config

from gateway.app import Gateway
from gateway.config import load_config
from gateway.routing import PracticeRouter
from gateway.state_store import StateStore
from otv_sdk.client import PartnerClient
from otv_sdk.errors import FailedPrecondition, Unavailable
from otv_sdk.models import Appointment, AppointmentState, Interval, Slot
from otv_sdk.ports import AppointmentQuery, CalendarEntry, CallContext, PageRequest, SlotQuery

ALPHA = as_partner("alpha")
REQUEST_ID = "move-1"

# Where the gateway dies (fake_adapters.STALL_STEPS), and what the store and the PVS hold then:
# the new appointment's state, whether the new one is in the PVS, whether the old one still is.
CRASH_STATES = {
    "before_write": ("writing", False, True),  # (a)
    "after_write": ("writing", True, True),  # (b)
    "before_delete": ("booked", True, True),  # (c)
    "after_delete": ("booked", True, False),  # (d)
}


@dataclass(frozen=True)
class Crash:
    old: Appointment
    new_id: str
    first: Slot  # the old time
    second: Slot  # the time it is moved to


def _pvs(database: Path) -> dict[str, str]:
    """Online entries in the PVS calendar: the gateway's appointment id to the PVS id."""
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT reference, id FROM calendar_entries WHERE reference IS NOT NULL")
        return {reference: str(pvs_id) for reference, pvs_id in rows}


def _appointments(store: StateStore) -> dict[str, dict[str, object]]:
    rows = store.run_sync(
        lambda tx: tx.all("SELECT id, state, pvs_id, rescheduled_from, rescheduled_to FROM appointments")
    )
    return {str(r["id"]): r for r in rows}


def _claim_owners(store: StateStore) -> list[str]:
    return sorted(str(r["owner"]) for r in store.run_sync(lambda tx: tx.all("SELECT owner FROM claims")))


async def _two_slots(client: PartnerClient) -> tuple[Slot, Slot]:
    """The first check-up slot of the demo week and the first one after it that does not overlap it."""
    lo = datetime.combine(ANCHOR, time(0), UTC)
    query = SlotQuery("kontrolle", Interval(lo, lo + timedelta(days=7)), ("berg",), PageRequest(50))
    slots = (await client.find_slots("demo", query, metadata=ALPHA)).items
    first = slots[0]
    return first, next(s for s in slots if s.start >= first.end)


async def _crash_mid_move(tmp_path: Path, url: str, database: Path, step: str) -> tuple[Appointment, Slot, Slot]:
    """Book an appointment through a stalling gateway, move it, and kill the gateway at `step`.
    Returns the appointment as booked, its time, and the time it was being moved to."""
    marker = tmp_path / "stalled"
    skip = 1 if step.endswith("write") else 0  # the booking being moved is written first
    settings = f', marker = "{marker}", stall_at = "{step}", skip = {skip}'
    adapter = reference_adapter(database, settings).replace('"reference"', '"fake_adapters:create_stalling"')
    config = write_config(tmp_path / "stalling.toml", url, adapter)
    async with gateway_process(config) as (process, address), PartnerClient.connect(address) as client:
        patient = await _patient(client, "alpha")
        first, second = await _two_slots(client)
        old = await client.book_appointment("demo", slot_request(first, patient), metadata=ALPHA)
        assert old.state is AppointmentState.BOOKED
        moving = asyncio.create_task(
            client.reschedule_appointment(
                "demo", old.id, old.etag, second.start, request_id=REQUEST_ID, metadata=ALPHA, timeout=90
            )
        )
        for _ in range(300):
            if marker.exists():
                break
            await asyncio.sleep(0.1)
        assert marker.exists(), f"the reschedule never reached {step}"
        process.send_signal(signal.SIGKILL)
        await process.wait()
        with pytest.raises(Unavailable):  # the call dies with the process
            await moving
    return old, first, second


def _assert_crashed_at(step: str, store: StateStore, database: Path, old_id: str) -> str:
    """The store and the PVS hold exactly what dying at `step` leaves; returns the new appointment's id."""
    rows = _appointments(store)
    (new_id,) = [i for i, r in rows.items() if r["rescheduled_from"] == old_id]
    new_state, new_in_pvs, old_in_pvs = CRASH_STATES[step]
    old = rows[old_id]
    assert (old["state"], old["rescheduled_to"]) == ("booked", new_id)  # the move is recorded, not done
    assert rows[new_id]["state"] == new_state
    assert (new_id in _pvs(database), old_id in _pvs(database)) == (new_in_pvs, old_in_pvs)
    assert _claim_owners(store) == sorted([old_id, new_id])  # both still hold their time
    return new_id


def _assert_moved(store: StateStore, database: Path, crash: Crash) -> None:
    """Exactly the new appointment is booked, in the PVS and claimed; the old one is released."""
    rows = _appointments(store)
    assert set(rows) == {crash.old.id, crash.new_id}  # nothing booked twice
    old, new = rows[crash.old.id], rows[crash.new_id]
    assert (old["state"], old["rescheduled_to"]) == ("rescheduled", crash.new_id)
    assert (new["state"], new["rescheduled_from"]) == ("booked", crash.old.id)
    assert _pvs(database) == {crash.new_id: new["pvs_id"]}
    assert _claim_owners(store) == [crash.new_id]


async def _assert_partner_sees_the_move(client: PartnerClient, crash: Crash) -> None:
    old = await client.get_appointment("demo", crash.old.id, metadata=ALPHA)
    new = await client.get_appointment("demo", crash.new_id, metadata=ALPHA)
    assert (old.state, old.rescheduled_to) == (AppointmentState.RESCHEDULED, crash.new_id)
    assert (new.state, new.rescheduled_from) == (AppointmentState.BOOKED, crash.old.id)
    assert new.interval.start == crash.second.start
    listed = await client.list_appointments("demo", AppointmentQuery(PageRequest(10)), metadata=ALPHA)
    assert [a.id for a in listed.items] == [crash.new_id]
    window = Interval(crash.first.start, crash.second.end)
    query = SlotQuery("kontrolle", window, (crash.first.column_id,), PageRequest(200))
    offered = {s.start for s in (await client.find_slots("demo", query, metadata=ALPHA)).items}
    assert crash.first.start in offered  # the old time is free again
    assert crash.second.start not in offered


async def _without_recovery(self: PracticeRouter) -> None:
    """Stands in for a gateway whose start-time recovery never met this move (a replica that was
    already running when the other one died): only the partner's retry can repair it there."""


@pytest.mark.slow
@pytest.mark.parametrize("path", ["recovery", "retry"])
@pytest.mark.parametrize("step", list(CRASH_STATES))
@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_reschedule_killed_at_any_step_completes_after_a_restart(
    backend: str, step: str, path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "pvs.sqlite"
    with store_for(backend, tmp_path) as (store, url):
        old, first, second = await _crash_mid_move(tmp_path, url, database, step)
        crash = Crash(old, _assert_crashed_at(step, store, database, old.id), first, second)
        if path == "retry":
            monkeypatch.setattr(PracticeRouter, "recover", _without_recovery)
        config = load_config(write_config(tmp_path / "normal.toml", url, reference_adapter(database)))
        gateway = await Gateway.start(config, identify=header_identity)
        try:
            async with PartnerClient.connect(gateway.address) as client:
                if path == "recovery":
                    _assert_moved(store, database, crash)  # by the start alone, before any call
                else:
                    assert _assert_crashed_at(step, store, database, old.id) == crash.new_id  # nothing repaired it yet
                    # Meanwhile the partner sees both, each pointing at the other.
                    listed = await client.list_appointments("demo", AppointmentQuery(PageRequest(10)), metadata=ALPHA)
                    links = {(a.id, a.rescheduled_from, a.rescheduled_to) for a in listed.items}
                    assert links == {(crash.old.id, None, crash.new_id), (crash.new_id, crash.old.id, None)}
                    retried = await client.reschedule_appointment(
                        "demo", crash.old.id, crash.old.etag, crash.second.start, request_id=REQUEST_ID, metadata=ALPHA
                    )
                    assert (retried.id, retried.state) == (crash.new_id, AppointmentState.BOOKED)
                    _assert_moved(store, database, crash)
                await _assert_partner_sees_the_move(client, crash)
                _assert_moved(store, database, crash)
        finally:
            await gateway.stop(0)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_move_whose_pvs_write_is_deferred_keeps_the_old_one_booked_until_it_completes(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with booking_env(backend, tmp_path) as env:
        alpha = await env.patient()
        first, second, third = await env.disjoint_slots(3)
        old = await env.client.book_appointment("demo", slot_request(first, alpha), metadata=ALPHA)
        desk = await env.desk()
        writer = desk._adapter.calendar_writer
        assert writer is not None

        async def unreachable(ctx: CallContext, entry: CalendarEntry) -> None:
            raise Unavailable("the PVS cannot be reached")

        monkeypatch.setattr(writer, "write_appointment", unreachable)
        moved = await env.client.reschedule_appointment(
            "demo", old.id, old.etag, second.start, request_id=REQUEST_ID, metadata=ALPHA
        )
        assert (moved.state, moved.rescheduled_from) == (AppointmentState.WRITING, old.id)
        # Meanwhile the old one stays booked, in the PVS and holding its time, linked to the new one.
        still = await env.client.get_appointment("demo", old.id, metadata=ALPHA)
        assert (still.state, still.rescheduled_to) == (AppointmentState.BOOKED, moved.id)
        listed = await env.client.list_appointments("demo", AppointmentQuery(PageRequest(10)), metadata=ALPHA)
        assert {(a.id, a.state) for a in listed.items} == {
            (old.id, AppointmentState.BOOKED),
            (moved.id, AppointmentState.WRITING),
        }
        assert [e["reference"] for e in env.pvs_entries()] == [old.id]
        offered = await env.slots(count=200)
        assert first not in offered
        assert second not in offered
        # No change goes ahead on top of the unfinished move: not while the PVS cannot be reached ...
        with pytest.raises(Unavailable):
            await env.client.cancel_appointment("demo", old.id, still.etag, metadata=ALPHA)
        with pytest.raises(Unavailable):
            await env.client.reschedule_appointment("demo", old.id, still.etag, third.start, metadata=ALPHA)
        assert [e["reference"] for e in env.pvs_entries()] == [old.id]

        monkeypatch.undo()
        assert await desk.recover(CallContext("otv-gateway")) == 1
        assert [e["reference"] for e in env.pvs_entries()] == [moved.id]
        done = await env.client.get_appointment("demo", old.id, metadata=ALPHA)
        assert (done.state, done.rescheduled_to) == (AppointmentState.RESCHEDULED, moved.id)
        now = await env.client.get_appointment("demo", moved.id, metadata=ALPHA)
        assert now.state is AppointmentState.BOOKED
        offered = await env.slots(count=200)
        assert first in offered
        assert second not in offered
        assert third in offered  # the refused move claimed nothing
        # ... and not afterwards either: the old one has moved on.
        with pytest.raises(FailedPrecondition, match="rescheduled"):
            await env.client.cancel_appointment("demo", old.id, done.etag, metadata=ALPHA)
        # The retry of the move returns the completed move, and moves nothing twice.
        again = await env.client.reschedule_appointment(
            "demo", old.id, old.etag, second.start, request_id=REQUEST_ID, metadata=ALPHA
        )
        assert (again.id, again.state) == (moved.id, AppointmentState.BOOKED)
        assert [e["reference"] for e in env.pvs_entries()] == [moved.id]
