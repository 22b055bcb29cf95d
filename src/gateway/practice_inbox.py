"""The practice's inbox: the bookings waiting for it, read once or watched live.

A booking waits for the practice in practice-confirmation mode (PENDING_PRACTICE) or as a manual
one staff must enter into the PVS (PENDING_TRANSFER); it leaves the inbox when decided
(practice_decisions.py), expired, cancelled or moved.

The inbox is watched live: every change to a booking in or leaving the inbox is numbered in the
store (`inbox_events`, in the transaction of the change), so a watcher resumes after its cursor on
any replica. Watchers wake on the practice's change feed, which also carries the partners'
appointment events other replicas stored (announced between replicas, change_feed.py); they poll
the store every second besides, for what reaches the inbox without such an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime

from gateway.booking import APPOINTMENT_SELECT, PENDING, BookingDesk
from gateway.patient_matching import read_sent
from gateway.practice_scope import PracticeScope
from gateway.state_store import Row, Tx
from otv_sdk.errors import FailedPrecondition, InvalidArgument
from otv_sdk.models import Calendar, Contact, Gender, PostalAddress
from otv_sdk.timeline import to_datetime

__all__ = [
    "CONFIRMATION",
    "TRANSFER",
    "InboxEvent",
    "InboxItem",
    "PatientDetails",
    "PracticeInbox",
    "inbox_item",
    "waiting",
]

CONFIRMATION, TRANSFER = "confirmation", "transfer"
_CURSOR_PREFIX = "i1-"
_POLL_SECONDS = 1.0  # how soon a watcher sees changes another replica made
_BATCH = 500


@dataclass(frozen=True, slots=True)
class PatientDetails:
    """The patient as the partner sent it: with FindOrCreatePatient or with the booking itself."""

    given_name: str
    family_name: str
    birth_date: date | None
    contacts: tuple[Contact, ...]
    gender: Gender | None = None
    address: PostalAddress | None = None
    note: str = ""  # what the patient wrote for the practice (bookings with details)


@dataclass(frozen=True, slots=True)
class InboxItem:
    appointment_id: str
    kind: str  # "confirmation" | "transfer"
    partner_id: str
    appointment_type_id: str
    appointment_type_name: str
    column_id: str
    column_name: str
    start: datetime
    end: datetime
    patient: PatientDetails | None
    create_time: datetime
    etag: str
    state: str = "pending_practice"  # the booking's state: pending_* while it waits, the outcome after


@dataclass(frozen=True, slots=True)
class InboxEvent:
    """An item added or changed (`item`), or one that left the inbox (`removed_id`); with neither, a
    heartbeat (only when `watch` was asked for them)."""

    cursor: str
    item: InboxItem | None
    removed_id: str | None


def _cursor(seq: int) -> str:
    return f"{_CURSOR_PREFIX}{seq}"


def _parse_cursor(text: str) -> int:
    digits = text.removeprefix(_CURSOR_PREFIX)
    if digits == text or not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        raise InvalidArgument.field("cursor", "is not a cursor this gateway issued")
    return int(digits)


def _kind(row: Row) -> str:
    return CONFIRMATION if row["mode"] == "confirmation" else TRANSFER


def waiting(row: Row) -> bool:
    """Whether the booking is in the inbox: pending for the practice and not being moved."""
    return row["state"] in PENDING and row["rescheduled_to"] is None


def inbox_item(tx: Tx, desk: BookingDesk, practice_id: str, row: Row, calendar: Calendar | None) -> InboxItem:
    """The booking as the practice reads it; also the answer to a decision on it."""
    cipher = desk.cipher
    patient = None
    sent = read_sent(tx, cipher, practice_id, cipher.open(row["patient"], "appointments.patient"), row["partner"])
    if sent is not None:
        patient = PatientDetails(
            sent.given_name,
            sent.family_name,
            sent.birth_date,
            sent.contacts,
            sent.gender,
            sent.address,
            sent.note,
        )
    type_name = column_name = ""
    if calendar is not None:
        kind = next((t for t in calendar.appointment_types if t.id == row["type_id"]), None)
        column = next((c for c in calendar.columns if c.id == row["column_id"]), None)
        type_name = kind.display_name if kind is not None else ""
        column_name = column.display_name if column is not None else ""
    return InboxItem(
        appointment_id=row["id"],
        kind=_kind(row),
        partner_id=row["partner"],
        appointment_type_id=row["type_id"],
        appointment_type_name=type_name or row["type_id"],
        column_id=row["column_id"],
        column_name=column_name or row["column_id"],
        start=to_datetime(row["start_s"]),
        end=to_datetime(row["end_s"]),
        patient=patient,
        create_time=to_datetime(row["create_s"]),
        etag=str(row["version"]),
        state=row["state"],
    )


class PracticeInbox:
    """The inbox part of a practice's desk."""

    def __init__(self, scope: PracticeScope) -> None:
        self._scope = scope

    async def inbox(self) -> list[InboxItem]:
        """Bookings waiting for the practice, oldest first."""
        desk = await self._scope.booking_desk()
        await desk.expire_due()
        calendar = await self._scope.calendar(desk)

        def read(tx: Tx) -> list[InboxItem]:
            rows = tx.all(
                f"{APPOINTMENT_SELECT} WHERE a.practice = ? AND a.state IN (?, ?) AND a.rescheduled_to IS NULL"
                " ORDER BY a.create_s, a.id",
                (self._scope.practice_id, *PENDING),
            )
            return [inbox_item(tx, desk, self._scope.practice_id, row, calendar) for row in rows]

        return await self._scope.store.run(read)

    def watch(self, cursor: str = "", *, heartbeat_seconds: float | None = None) -> AsyncIterator[InboxEvent]:
        """With no cursor the current items first, then changes live; with a cursor the changes after
        it. `heartbeat_seconds` adds an event with neither item nor removed_id when idle that long."""
        start = _parse_cursor(cursor) if cursor else None  # a malformed cursor fails at once
        return self._follow(start, heartbeat_seconds)

    async def _follow(self, start: int | None, heartbeat: float | None) -> AsyncIterator[InboxEvent]:
        desk = await self._scope.booking_desk()
        await desk.expire_due()
        calendar = await self._scope.calendar(desk)

        def begin(tx: Tx) -> tuple[int, int | None, list[InboxItem]]:
            row = tx.one(
                "SELECT MAX(seq) AS last, MIN(seq) AS oldest FROM inbox_events WHERE practice = ?",
                (self._scope.practice_id,),
            )
            last = int(row["last"]) if row and row["last"] is not None else 0
            oldest = int(row["oldest"]) if row and row["oldest"] is not None else None
            items: list[InboxItem] = []
            if start is None:
                rows = tx.all(
                    f"{APPOINTMENT_SELECT} WHERE a.practice = ? AND a.state IN (?, ?) AND a.rescheduled_to IS NULL"
                    " ORDER BY a.create_s, a.id",
                    (self._scope.practice_id, *PENDING),
                )
                items = [inbox_item(tx, desk, self._scope.practice_id, r, calendar) for r in rows]
            return last, oldest, items

        last, oldest, items = await self._scope.store.run(begin)
        if start is not None:
            if start > last:
                raise InvalidArgument.field("cursor", "is ahead of this practice's inbox; it was not issued here")
            if oldest is not None and start < oldest - 1:
                raise FailedPrecondition("the cursor is older than the inbox changes kept: watch again without one")
            last = start
        for item in items:
            yield InboxEvent(_cursor(last), item, None)
        idle = 0.0
        while True:
            wakeup = self._scope.wakeup  # taken before reading, so a change meanwhile still wakes us
            events = await self._after(desk, last, calendar)
            for seq, event in events:
                last = seq
                if event is not None:
                    yield event
            if events:
                idle = 0.0
                continue
            wait = _POLL_SECONDS if heartbeat is None else min(_POLL_SECONDS, max(heartbeat - idle, 0.0))
            began = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), wait)
            idle += time.monotonic() - began
            if heartbeat is not None and idle >= heartbeat:
                idle = 0.0
                yield InboxEvent(_cursor(last), None, None)
            desk = await self._scope.booking_desk()
            await desk.expire_due()  # a confirmation falling due leaves the inbox while watched

    async def _after(
        self, desk: BookingDesk, last: int, calendar: Calendar | None
    ) -> list[tuple[int, InboxEvent | None]]:
        def read(tx: Tx) -> list[tuple[int, InboxEvent | None]]:
            rows = tx.all(
                "SELECT seq, appointment_id FROM inbox_events WHERE practice = ? AND seq > ? ORDER BY seq LIMIT ?",
                (self._scope.practice_id, last, _BATCH),
            )
            # Several changes to one booking in a batch: its state now, once, at the last of them.
            final = {r["appointment_id"]: int(r["seq"]) for r in rows}
            out: list[tuple[int, InboxEvent | None]] = []
            for r in rows:
                seq, appointment_id = int(r["seq"]), r["appointment_id"]
                if final[appointment_id] != seq:
                    out.append((seq, None))
                    continue
                row = tx.one(
                    f"{APPOINTMENT_SELECT} WHERE a.id = ? AND a.practice = ?", (appointment_id, self._scope.practice_id)
                )
                if row is not None and waiting(row):
                    item = inbox_item(tx, desk, self._scope.practice_id, row, calendar)
                    out.append((seq, InboxEvent(_cursor(seq), item, None)))
                else:
                    out.append((seq, InboxEvent(_cursor(seq), None, appointment_id)))
            return out

        return await self._scope.store.run(read)
