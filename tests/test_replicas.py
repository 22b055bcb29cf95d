"""Three gateway replicas on one PostgreSQL database behind nginx (a real gRPC load balancer).

What only several processes behind a load balancer can show: a booking made on one replica reaches
watchers served by the others (PostgreSQL NOTIFY wakes them, the stored events are what they read);
a replica killed mid-stream costs its watchers a reconnect through nginx with their cursor and no
event; a hundred holds on one slot spread over the replicas by nginx have exactly one winner.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from booking_env import ANCHOR
from load_balancer import PRACTICE, cluster
from patient_env import as_partner

from otv_sdk.changes import AppointmentChanged, ChangeEvent
from otv_sdk.client import PartnerClient
from otv_sdk.errors import Aborted, FailedPrecondition
from otv_sdk.models import Appointment, Interval
from otv_sdk.ports import PageRequest, PatientQuery, SlotQuery, SlotRequest

pytestmark = pytest.mark.slow

_WINDOW = Interval(
    datetime.combine(ANCHOR, datetime.min.time(), UTC),
    datetime.combine(ANCHOR, datetime.min.time(), UTC) + timedelta(days=7),
)


async def _patient(client: PartnerClient, partner: str) -> str:
    query = PatientQuery("Erika", "Mustermann", ANCHOR.replace(year=1964))
    patient, _ = await client.find_or_create_patient(PRACTICE, query, metadata=as_partner(partner))
    return patient.id


async def _slots(client: PartnerClient, count: int) -> list[SlotRequest]:
    """`count` free slots that do not overlap (booking one leaves the others free)."""
    query = SlotQuery("kontrolle", _WINDOW, ("berg",), PageRequest(500))
    chosen: list[SlotRequest] = []
    until = _WINDOW.start
    for slot in (await client.find_slots(PRACTICE, query, metadata=as_partner("alpha"))).items:
        if slot.start >= until and len(chosen) < count:
            chosen.append(SlotRequest("kontrolle", slot.column_id, slot.start, ""))
            until = slot.end
    assert len(chosen) == count
    return chosen


async def _cursor(client: PartnerClient) -> str:
    _, cursor = await client.busy_snapshot(PRACTICE, _WINDOW, metadata=as_partner("alpha"))
    return cursor


async def _book(client: PartnerClient, slot: SlotRequest, patient: str, request_id: str) -> Appointment:
    request = SlotRequest(slot.appointment_type_id, slot.column_id, slot.start, patient)
    return await client.book_appointment(
        PRACTICE, request, request_id=request_id, metadata=as_partner("alpha"), timeout=30
    )


async def _first_appointment(events: AsyncIterator[ChangeEvent], appointment_id: str) -> float:
    """When (monotonic) the appointment's change arrived on the stream."""
    async for event in events:
        if isinstance(event.change, AppointmentChanged) and event.change.appointment.id == appointment_id:
            return time.monotonic()
    raise AssertionError("the stream ended")


async def test_a_booking_on_one_replica_reaches_watchers_on_the_others_and_through_nginx(tmp_path: Path) -> None:
    async with cluster(tmp_path, ANCHOR.isoformat()) as lb:
        direct = [PartnerClient.connect(r.address) for r in lb.replicas]
        through = PartnerClient.connect(lb.balancer)
        try:
            patient = await _patient(through, "alpha")
            (slot,) = await _slots(through, 1)
            cursor = await _cursor(through)
            streams = [
                direct[1].watch_changes(PRACTICE, (), cursor, metadata=as_partner("alpha")),
                direct[2].watch_changes(PRACTICE, (), cursor, metadata=as_partner("alpha")),
                through.watch_changes(PRACTICE, (), cursor, metadata=as_partner("alpha")),
            ]
            booked = await _book(direct[0], slot, patient, "replica-book-1")
            began = time.monotonic()
            async with asyncio.timeout(10):
                arrived = await asyncio.gather(*(_first_appointment(s, booked.id) for s in streams))
            # Far under the fallback poll's second: the other replicas were woken by the notification.
            assert max(arrived) - began < 3.0, [round(a - began, 3) for a in arrived]
            for stream in streams:
                await stream.aclose()  # type: ignore[attr-defined]
        finally:
            for client in [*direct, through]:
                await client.close()


@dataclass
class _Watcher:
    """A partner's watch through the load balancer that reconnects with its last cursor."""

    client: PartnerClient
    cursor: str
    seen: list[tuple[str, str]] = field(default_factory=list)  # (cursor, appointment id) in order
    reconnects: int = 0

    async def run(self) -> None:
        while True:
            try:
                async for event in self.client.watch_changes(PRACTICE, (), self.cursor, metadata=as_partner("alpha")):
                    if isinstance(event.change, AppointmentChanged):
                        self.seen.append((event.cursor, event.change.appointment.id))
                    self.cursor = event.cursor
            except asyncio.CancelledError:
                raise
            except Exception:  # the replica serving this stream went away: reconnect through nginx
                self.reconnects += 1
                await asyncio.sleep(0.05)


async def _until(condition: Callable[[], bool], seconds: float) -> None:
    """Polls a condition of the watchers' own lists (nothing to wait on: they are plain lists)."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_watchers_of_a_killed_replica_reconnect_through_nginx_with_their_cursor_and_miss_nothing(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path, ANCHOR.isoformat()) as lb:
        through = PartnerClient.connect(lb.balancer)
        try:
            patient = await _patient(through, "alpha")
            slots = await _slots(through, 8)
            cursor = await _cursor(through)
            watchers = [_Watcher(through, cursor) for _ in range(6)]  # round robin: two per replica
            tasks = [asyncio.create_task(w.run()) for w in watchers]
            booked: list[str] = []
            for index, slot in enumerate(slots[:4]):
                booked.append((await _book(through, slot, patient, f"before-{index}")).id)
            await _until(lambda: all(len(w.seen) >= len(booked) for w in watchers), 20)
            lb.replicas[0].kill()
            await lb.replicas[0].process.wait()
            for index, slot in enumerate(slots[4:]):  # nginx routes around the dead replica
                booked.append((await _book(through, slot, patient, f"after-{index}")).id)
            await _until(lambda: all(len(w.seen) >= len(booked) for w in watchers), 30)
            await asyncio.sleep(0.5)  # anything doubled would arrive now
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for watcher in watchers:
                assert [appointment for _, appointment in watcher.seen] == booked, watcher.reconnects
                sequence = [int(c.removeprefix("c1-")) for c, _ in watcher.seen]
                assert sequence == sorted(set(sequence))  # each event once, in order
            assert sum(w.reconnects for w in watchers) >= 1, "no stream was on the killed replica"
        finally:
            await through.close()


async def test_a_hundred_holds_on_one_slot_through_nginx_have_exactly_one_winner(tmp_path: Path) -> None:
    async with cluster(tmp_path, ANCHOR.isoformat()) as lb:
        through = PartnerClient.connect(lb.balancer)
        try:
            partners = ["alpha", "beta", "gamma", "delta"]
            patients = {p: await _patient(through, p) for p in partners}
            (target,) = await _slots(through, 1)
            attempts = [
                through.hold_slot(
                    PRACTICE,
                    SlotRequest(target.appointment_type_id, target.column_id, target.start, patients[partners[i % 4]]),
                    metadata=as_partner(partners[i % 4]),
                    timeout=60,
                )
                for i in range(100)
            ]
            results = await asyncio.gather(*attempts, return_exceptions=True)
            winners = [r for r in results if not isinstance(r, BaseException)]
            losers = [r for r in results if isinstance(r, BaseException)]
            assert len(winners) == 1, losers[:3]
            assert all(isinstance(r, Aborted | FailedPrecondition) for r in losers), losers[:3]
        finally:
            await through.close()
