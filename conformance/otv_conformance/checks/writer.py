"""Writer: bookings reach the PVS calendar once, and leave it when cancelled or moved.

Holds, exactly-one-winner and idempotency are enforced by the gateway for every adapter; they are
checked here anyway because a certificate is about the whole chain a partner relies on. Whether a
booking reached the PVS is read from the adapter itself, not from the partner's view (which also
shows the gateway's own claims).
"""

from __future__ import annotations

import asyncio
import uuid

from otv_conformance.cases import Group, case, check
from otv_conformance.expectations import seconds, subtract
from otv_conformance.session import Session
from otv_sdk.errors import Aborted, FailedPrecondition
from otv_sdk.models import Slot
from otv_sdk.ports import SlotRequest

G = Group.WRITER


def _span(slot: Slot) -> tuple[int, int]:
    return seconds(slot.start), seconds(slot.end)


async def _slot(session: Session, day: str, column_id: str, type_id: str = "kontrolle") -> Slot:
    return await session.first_slot(type_id, session.days(session.day(day), 1), column_id)


async def _request(session: Session, slot: Slot, type_id: str = "kontrolle") -> SlotRequest:
    return SlotRequest(type_id, slot.column_id, slot.start, await session.new_patient_id())


async def _in_pvs(session: Session, slot: Slot) -> bool:
    busy = await session.pvs_busy(slot.column_id, session.days(slot.start.astimezone(session.placed.tz).date(), 1))
    return not subtract([_span(slot)], busy)


@case("writer.book.written", "WR-1", G)
async def book_written(session: Session) -> None:
    """A booked appointment is in the PVS calendar at its time and column."""
    slot = await _slot(session, "A+35", "dr-a")
    appointment = await session.a.book_appointment(session.practice_id, await _request(session, slot))
    check(appointment.interval.start == slot.start, f"booked at {appointment.interval.start}, asked for {slot.start}")
    check(await _in_pvs(session, slot), "the booking is not in the PVS calendar")


@case("writer.hold.blocks", "WR-2", G)
async def hold_blocks(session: Session) -> None:
    """A held slot is not offered to others; confirming it books it into the PVS."""
    slot = await _slot(session, "A+36", "dr-a")
    hold = await session.a.hold_slot(session.practice_id, await _request(session, slot))
    offered = await session.slots("kontrolle", session.days(session.day("A+36"), 1), ("dr-a",))
    check(all(s.start != slot.start for s in offered), "the held slot is still offered")
    try:
        await session.b.book_appointment(
            session.practice_id, SlotRequest("kontrolle", slot.column_id, slot.start, await _b_patient(session))
        )
        check(False, "partner B could book a slot partner A holds")
    except (Aborted, FailedPrecondition):
        pass
    await session.a.confirm_hold(session.practice_id, hold.id)
    check(await _in_pvs(session, slot), "the confirmed hold is not in the PVS calendar")


async def _b_patient(session: Session) -> str:
    patient, _ = await session.lookup(session.new_person("Bpartner"), partner=session.b)
    return patient.id


@case("writer.hold.release", "WR-2", G)
async def hold_release(session: Session) -> None:
    """A released hold frees the slot again and writes nothing."""
    slot = await _slot(session, "A+37", "dr-a")
    hold = await session.a.hold_slot(session.practice_id, await _request(session, slot))
    await session.a.release_hold(session.practice_id, hold.id)
    offered = await session.slots("kontrolle", session.days(session.day("A+37"), 1), ("dr-a",))
    check(any(s.start == slot.start for s in offered), "the released slot is not offered again")
    check(not await _in_pvs(session, slot), "a released hold is in the PVS calendar")


@case("writer.book.one_winner", "WR-3", G)
async def one_winner(session: Session) -> None:
    """Six concurrent bookings of one slot: one succeeds, five get ABORTED or FAILED_PRECONDITION."""
    slot = await _slot(session, "A+35", "dr-b")
    requests = [await _request(session, slot) for _ in range(6)]
    results = await asyncio.gather(
        *(session.a.book_appointment(session.practice_id, r) for r in requests), return_exceptions=True
    )
    wins = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, (Aborted, FailedPrecondition))]
    others = [type(r).__name__ for r in results if isinstance(r, BaseException) and r not in refused]
    check(len(wins) == 1, f"{len(wins)} bookings succeeded, expected 1")
    check(not others, f"unexpected errors: {others}")


@case("writer.book.idempotent", "WR-4", G)
async def idempotent(session: Session) -> None:
    """The same booking sent twice with one request_id returns one appointment, written once."""
    slot = await _slot(session, "A+36", "dr-b")
    request = await _request(session, slot)
    rid = str(uuid.uuid4())
    first = await session.a.book_appointment(session.practice_id, request, request_id=rid)
    second = await session.a.book_appointment(session.practice_id, request, request_id=rid)
    check(first.id == second.id, "the retry created a second appointment")
    await session.a.cancel_appointment(session.practice_id, first.id, first.etag)
    check(not await _in_pvs(session, slot), "after cancelling the one appointment, the PVS still has an entry there")


@case("writer.cancel.frees_time", "WR-5", G)
async def cancel_frees(session: Session) -> None:
    """A cancelled appointment leaves the PVS calendar and its slot is offered again."""
    slot = await _slot(session, "A+37", "dr-b")
    appointment = await session.a.book_appointment(session.practice_id, await _request(session, slot))
    check(await _in_pvs(session, slot), "the booking is not in the PVS calendar")
    await session.a.cancel_appointment(session.practice_id, appointment.id, appointment.etag)
    check(not await _in_pvs(session, slot), "the cancelled appointment is still in the PVS calendar")
    offered = await session.slots("kontrolle", session.days(session.day("A+37"), 1), ("dr-b",))
    check(any(s.start == slot.start for s in offered), "the cancelled slot is not offered again")


@case("writer.reschedule.moves", "WR-6", G)
async def reschedule(session: Session) -> None:
    """A rescheduled appointment leaves its old time in the PVS and occupies the new one."""
    old = await _slot(session, "A+38", "dr-a")
    new = await _slot(session, "A+39", "dr-a")
    appointment = await session.a.book_appointment(session.practice_id, await _request(session, old))
    moved = await session.a.reschedule_appointment(session.practice_id, appointment.id, appointment.etag, new.start)
    check(moved.interval.start == new.start, f"moved to {moved.interval.start}, asked for {new.start}")
    check(await _in_pvs(session, new), "the new time is not in the PVS calendar")
    check(not await _in_pvs(session, old), "the old time is still in the PVS calendar")
