"""WriterService through a real gateway, on both state-store backends (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from booking_env import BookingEnv, booking_env, slot_request
from patient_env import as_partner
from store_backends import BACKENDS

from gateway.practice_desk import practice_desk
from gateway.state_store import Row, StateStore, Tx
from otv_sdk.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound
from otv_sdk.models import AppointmentState
from otv_sdk.ports import AppointmentQuery, PageRequest, SlotRequest

ALPHA, BETA = as_partner("alpha"), as_partner("beta")
T = TypeVar("T")


# Every state-store backend with the adapter in-process, and the PVS behind an adapter server.
SETUPS = [*((backend, "in_process") for backend in BACKENDS), ("sqlite", "remote")]


@pytest.fixture(params=SETUPS, ids=["-".join(s) for s in SETUPS])
async def env(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    backend, transport = request.param
    async with booking_env(backend, tmp_path, transport) as environment:
        yield environment


async def test_hold_blocks_the_slot_for_everyone_and_confirm_writes_it_to_the_pvs(env: BookingEnv) -> None:
    alpha, beta = await env.patient("alpha"), await env.patient("beta")
    slot = (await env.slots())[0]
    hold = await env.client.hold_slot("demo", slot_request(slot, alpha), metadata=ALPHA)
    assert hold.interval.start == slot.start
    remaining = hold.expire_time - datetime.now(UTC)
    assert timedelta(minutes=14) < remaining <= timedelta(minutes=15)
    assert slot not in await env.slots()  # gone from every partner's offer
    with pytest.raises((Aborted, FailedPrecondition)):
        await env.client.hold_slot("demo", slot_request(slot, beta), metadata=BETA)
    appointment = await env.client.confirm_hold("demo", hold.id, metadata=ALPHA)
    assert appointment.state is AppointmentState.BOOKED
    assert not appointment.extra
    (entry,) = env.pvs_entries(appointment.id)
    assert entry["source_partner"] == "alpha"
    assert entry["category"] == "online"
    assert entry["column_id"] == slot.column_id
    assert slot not in await env.slots()
    desk = await env.desk()
    audit = await desk._store.run(
        lambda tx: tx.all("SELECT partner, action, subject, at_s FROM audit ORDER BY at_s, action")
    )
    assert sorted((a["partner"], a["action"]) for a in audit) == [("alpha", "confirm"), ("alpha", "hold")]
    assert {a["subject"] for a in audit} == {hold.id, appointment.id}


async def test_an_expired_hold_frees_the_slot_by_itself(env: BookingEnv) -> None:
    alpha, beta = await env.patient("alpha"), await env.patient("beta")
    slot = (await env.slots())[0]
    hold = await env.client.hold_slot("demo", slot_request(slot, alpha), metadata=ALPHA)
    desk = await env.desk()
    # Let the hold's time pass without waiting: move its expiry into the past, nothing else.
    await desk._store.run(lambda tx: tx.execute("UPDATE claims SET expire_s = expire_s - 3600"))
    await desk._store.run(lambda tx: tx.execute("UPDATE holds SET expire_s = expire_s - 3600"))
    assert slot in await env.slots()
    with pytest.raises(FailedPrecondition, match="expired"):
        await env.client.confirm_hold("demo", hold.id, metadata=ALPHA)
    taken = await env.client.hold_slot("demo", slot_request(slot, beta), metadata=BETA)
    assert taken.interval.start == slot.start


async def test_released_hold_gives_the_slot_back(env: BookingEnv) -> None:
    alpha = await env.patient()
    slot = (await env.slots())[0]
    hold = await env.client.hold_slot("demo", slot_request(slot, alpha), metadata=ALPHA)
    await env.client.release_hold("demo", hold.id, metadata=ALPHA)
    assert slot in await env.slots()
    with pytest.raises(FailedPrecondition):
        await env.client.confirm_hold("demo", hold.id, metadata=ALPHA)


async def test_booking_is_idempotent_per_request_id(env: BookingEnv) -> None:
    alpha = await env.patient()
    first, second = await env.disjoint_slots(2)
    booked = await env.client.book_appointment("demo", slot_request(first, alpha), request_id="r-1", metadata=ALPHA)
    again = await env.client.book_appointment("demo", slot_request(first, alpha), request_id="r-1", metadata=ALPHA)
    assert again.id == booked.id
    assert len(env.pvs_entries()) == 1
    with pytest.raises(InvalidArgument) as caught:
        await env.client.book_appointment("demo", slot_request(second, alpha), request_id="r-1", metadata=ALPHA)
    assert [v.field for v in caught.value.violations] == ["request_id"]


async def test_cancel_removes_it_from_the_pvs_and_lists_the_cancellation_date(env: BookingEnv) -> None:
    alpha = await env.patient()
    slot = (await env.slots())[0]
    booked = await env.client.book_appointment("demo", slot_request(slot, alpha), metadata=ALPHA)
    with pytest.raises(Aborted):
        await env.client.cancel_appointment("demo", booked.id, "stale-etag", metadata=ALPHA)
    cancelled = await env.client.cancel_appointment("demo", booked.id, booked.etag, metadata=ALPHA)
    assert cancelled.state is AppointmentState.CANCELLED
    assert cancelled.cancel_time is not None
    assert env.pvs_entries() == []
    assert slot in await env.slots()
    listed = await env.client.list_appointments(
        "demo", AppointmentQuery(PageRequest(10), include_cancelled=True), metadata=ALPHA
    )
    assert [(a.id, a.cancel_time) for a in listed.items] == [(booked.id, cancelled.cancel_time)]
    active = await env.client.list_appointments("demo", AppointmentQuery(PageRequest(10)), metadata=ALPHA)
    assert active.items == []


async def test_reschedule_secures_the_new_time_then_releases_the_old(env: BookingEnv) -> None:
    alpha = await env.patient()
    first, second = await env.disjoint_slots(2)
    booked = await env.client.book_appointment("demo", slot_request(first, alpha), metadata=ALPHA)
    moved = await env.client.reschedule_appointment("demo", booked.id, booked.etag, second.start, metadata=ALPHA)
    assert moved.state is AppointmentState.BOOKED
    assert moved.rescheduled_from == booked.id
    old = await env.client.get_appointment("demo", booked.id, metadata=ALPHA)
    assert old.state is AppointmentState.RESCHEDULED
    assert old.rescheduled_to == moved.id
    assert [e["reference"] for e in env.pvs_entries()] == [moved.id]
    assert first in await env.slots(count=20)


async def test_a_move_by_a_few_minutes_may_overlap_its_own_old_time(env: BookingEnv) -> None:
    alpha = await env.patient()
    slots = await env.slots(count=40)
    first = slots[0]
    near = next(s for s in slots if timedelta(0) < s.start - first.start < timedelta(minutes=20))
    booked = await env.client.book_appointment("demo", slot_request(first, alpha), metadata=ALPHA)
    moved = await env.client.reschedule_appointment("demo", booked.id, booked.etag, near.start, metadata=ALPHA)
    assert moved.interval.start == near.start


async def test_other_partners_records_look_like_unknown_ones(env: BookingEnv) -> None:
    alpha, beta = await env.patient("alpha"), await env.patient("beta")
    first, second = await env.disjoint_slots(2)
    hold = await env.client.hold_slot("demo", slot_request(first, alpha), metadata=ALPHA)
    booked = await env.client.book_appointment("demo", slot_request(second, alpha), metadata=ALPHA)
    for call in (
        env.client.confirm_hold("demo", hold.id, metadata=BETA),
        env.client.confirm_hold("demo", "hnosuchhold", metadata=ALPHA),
        env.client.cancel_appointment("demo", booked.id, booked.etag, metadata=BETA),
        env.client.get_appointment("demo", booked.id, metadata=BETA),
        env.client.book_appointment("demo", slot_request(second, alpha), metadata=BETA),  # alpha's patient id
    ):
        with pytest.raises(NotFound):
            await call
    del beta


async def test_bad_slots_get_a_clear_status_and_change_nothing(env: BookingEnv) -> None:
    alpha = await env.patient()
    slot = (await env.slots())[0]
    cases = [
        (
            SlotRequest("kontrolle", slot.column_id, slot.start + timedelta(minutes=2), alpha),
            InvalidArgument,
            "start_time",
        ),
        (SlotRequest("pzr", "berg", slot.start, alpha), InvalidArgument, "column"),
        (SlotRequest("nope", "berg", slot.start, alpha), InvalidArgument, "appointment_type"),
        (SlotRequest("kontrolle", "berg", slot.start - timedelta(days=400), alpha), FailedPrecondition, None),
        (SlotRequest("kontrolle", "berg", slot.start + timedelta(days=400), alpha), FailedPrecondition, None),
    ]
    for request, error, field in cases:
        with pytest.raises(error) as caught:
            await env.client.book_appointment("demo", request, metadata=ALPHA)
        if field is not None:
            assert [v.field for v in caught.value.violations] == [field]
    booked = await env.client.book_appointment("demo", slot_request(slot, alpha), metadata=ALPHA)
    with pytest.raises((FailedPrecondition, Aborted)):
        await env.client.book_appointment("demo", slot_request(slot, alpha), metadata=ALPHA)
    assert [e["reference"] for e in env.pvs_entries()] == [booked.id]


async def test_concurrent_holds_on_one_slot_have_exactly_one_winner(env: BookingEnv) -> None:
    patients = {p: await env.patient(p) for p in ("alpha", "beta", "gamma")}
    slot = (await env.slots())[0]
    attempts = [
        env.client.hold_slot("demo", slot_request(slot, patients[p]), metadata=as_partner(p))
        for p in ("alpha", "beta", "gamma")
        for _ in range(10)
    ]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, (Aborted, FailedPrecondition)) for r in results if isinstance(r, BaseException))


@pytest.mark.parametrize("backend", BACKENDS)
async def test_cancellation_deadline(backend: str, tmp_path: Path) -> None:
    async with booking_env(backend, tmp_path, cancellation_deadline_hours=24 * 60) as env:
        alpha = await env.patient()
        booked = await env.client.book_appointment("demo", slot_request((await env.slots())[0], alpha), metadata=ALPHA)
        with pytest.raises(FailedPrecondition, match="hours before"):
            await env.client.cancel_appointment("demo", booked.id, booked.etag, metadata=ALPHA)
        with pytest.raises(FailedPrecondition, match="hours before"):
            await env.client.reschedule_appointment(
                "demo", booked.id, booked.etag, booked.interval.start, metadata=ALPHA
            )


@pytest.mark.parametrize("backend", BACKENDS)
async def test_confirmation_mode_waits_for_the_practice(backend: str, tmp_path: Path) -> None:
    async with booking_env(backend, tmp_path, mode="confirmation") as env:
        alpha = await env.patient()
        first, second = await env.disjoint_slots(2)
        pending = await env.client.book_appointment("demo", slot_request(first, alpha), metadata=ALPHA)
        rejected = await env.client.book_appointment("demo", slot_request(second, alpha), metadata=ALPHA)
        assert pending.state is AppointmentState.PENDING_PRACTICE
        assert env.pvs_entries() == []
        assert first not in await env.slots()
        desk = await practice_desk(env.gateway.router, "demo")
        assert sorted(i.appointment_id for i in await desk.inbox()) == sorted([pending.id, rejected.id])
        await desk.accept("staff:test", pending.id, pending.etag, "r1")
        await desk.reject("staff:test", rejected.id, rejected.etag, "no time", "r2")
        assert (await env.client.get_appointment("demo", pending.id, metadata=ALPHA)).state is AppointmentState.BOOKED
        assert (
            await env.client.get_appointment("demo", rejected.id, metadata=ALPHA)
        ).state is AppointmentState.REJECTED
        assert [e["reference"] for e in env.pvs_entries()] == [pending.id]
        assert second in await env.slots()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_manual_mode_waits_in_the_inbox_until_transferred(backend: str, tmp_path: Path) -> None:
    async with booking_env(backend, tmp_path, mode="automatic", modes={"kontrolle": "manual"}) as env:
        alpha = await env.patient()
        slot = (await env.slots())[0]
        waiting = await env.client.book_appointment("demo", slot_request(slot, alpha), metadata=ALPHA)
        assert waiting.state is AppointmentState.PENDING_TRANSFER
        desk = await practice_desk(env.gateway.router, "demo")
        (item,) = await desk.inbox()
        assert (item.column_id, item.appointment_type_id, item.start) == (slot.column_id, "kontrolle", slot.start)
        assert slot not in await env.slots()
        await desk.mark_transferred("staff:test", waiting.id, item.etag, "pvs-42", "r1")
        assert (await env.client.get_appointment("demo", waiting.id, metadata=ALPHA)).state is AppointmentState.BOOKED
        with pytest.raises(FailedPrecondition):
            await desk.mark_transferred("staff:test", waiting.id, "", None, "r2")


async def test_a_confirmed_hold_whose_time_was_taken_in_the_pvs_becomes_an_extra_appointment(tmp_path: Path) -> None:
    async with booking_env("sqlite", tmp_path) as env:
        alpha = await env.patient()
        slot = (await env.slots())[0]
        hold = await env.client.hold_slot("demo", slot_request(slot, alpha), metadata=ALPHA)
        # Staff book the same time directly in the PVS while the patient confirms by link.
        start, end = int(slot.start.timestamp()), int(slot.end.timestamp())
        import sqlite3

        with sqlite3.connect(env.database_path) as conn:
            conn.execute(
                "INSERT INTO calendar_entries (column_id, start_utc, end_utc, kind) VALUES (?, ?, ?, 'appointment')",
                (slot.column_id, start, end),
            )
        appointment = await env.client.confirm_hold("demo", hold.id, metadata=ALPHA)
        assert appointment.state is AppointmentState.BOOKED
        assert appointment.extra
        assert env.pvs_entries(appointment.id)[0]["extra"] == 1


class _LockNotingTx:
    """A transaction that notes each key it locks, and otherwise does what the real one does."""

    def __init__(self, inner: Tx, locks: list[str]) -> None:
        self._inner = inner
        self._locks = locks

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._inner.execute(sql, params)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return self._inner.one(sql, params)

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._inner.all(sql, params)

    def lock(self, key: str) -> None:
        self._locks.append(key)
        self._inner.lock(key)


class _LockSpy(StateStore):
    """The desk's store, recording the keys its transactions lock."""

    def __init__(self, inner: StateStore) -> None:
        self.inner = inner
        self.locks: list[str] = []

    def run_sync(self, work: Callable[[Tx], T], *, durable: bool = True) -> T:
        return self.inner.run_sync(lambda tx: work(_LockNotingTx(tx, self.locks)), durable=durable)

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_confirm_hold_locks_the_column_whose_claim_it_hands_over(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with booking_env(backend, tmp_path) as env:
        alpha = await env.patient()
        slot = (await env.slots())[0]
        hold = await env.client.hold_slot("demo", slot_request(slot, alpha), metadata=ALPHA)
        desk = await env.desk()
        spy = _LockSpy(desk._store)
        monkeypatch.setattr(desk, "_store", spy)
        appointment = await env.client.confirm_hold("demo", hold.id, metadata=ALPHA)
        assert appointment.state is AppointmentState.BOOKED
        # Serialised with every other change to this column's claims, as taking a claim is.
        assert spy.locks == [f"demo/{slot.column_id}"]
