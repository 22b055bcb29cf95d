"""The practice's side of online booking: its inbox, decisions, audit and partner licences.

What the practice does with bookings that wait for it (booking.py): confirm or reject one in
practice-confirmation mode (PENDING_PRACTICE), mark a manual one transferred once staff entered it
into the PVS (PENDING_TRANSFER), or reject either with a reason. Both the PVS (PracticeService,
practice_service.py) and the staff web page (practice_web/) use this one desk; `actor` says who
decided ("pvs:<key id>", "staff:<user>") and goes into the audit with the decision.

Effects reach the partner: accepting writes the booking into the PVS (an extra appointment when
its slot was taken there meanwhile) and records it BOOKED; rejecting releases its time; each
decision is announced on the partner's change feed, and a rejection's reason is part of the
appointment the partner reads. A confirmation left undecided for `confirm_within` is rejected by
the gateway (`BookingDesk.expire_due`): its claim lapses at that moment by itself, the record
follows on the next read of either side.

The inbox is watched live: every change to a booking in or leaving the inbox is numbered in the
store (`inbox_events`, in the transaction of the change), so a watcher resumes after its cursor on
any replica. Watchers wake on the practice's change feed, which also carries the partners'
appointment events other replicas stored (announced between replicas, change_feed.py); they poll
the store every second besides, for what reaches the inbox without such an event.

Decisions are idempotent per `request_id` (per actor), and checked in this order: the booking
exists in this practice (NOT_FOUND naming `name`), it is still waiting for this decision
(FAILED_PRECONDITION), the etag is current (ABORTED).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

from gateway.booking import APPOINTMENT_SELECT, PENDING, BookingDesk, note_inbox
from gateway.partners import PVS_SERVICES, SERVICES, bump_version
from gateway.patient_matching import read_sent
from gateway.state_store import Row, Tx
from otv_sdk.changes import AppointmentChanged, Change
from otv_sdk.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound, OtvError
from otv_sdk.models import Calendar, Contact, Gender, PostalAddress
from otv_sdk.ports import CallContext
from otv_sdk.timeline import from_datetime, to_datetime

if TYPE_CHECKING:
    from gateway.routing import PracticeRouter

__all__ = [
    "AuditEntry",
    "InboxEvent",
    "InboxItem",
    "PartnerLicence",
    "PatientDetails",
    "PracticeDesk",
    "RecentBooking",
    "practice_desk",
]

log = logging.getLogger("otv.gateway.practice")

CONFIRMATION, TRANSFER = "confirmation", "transfer"
MAX_REASON = 500
MAX_PVS_ID = 200
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


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    partner_id: str
    action: str
    subject: str
    outcome: str


@dataclass(frozen=True, slots=True)
class PartnerLicence:
    partner_id: str
    display_name: str
    services: frozenset[str]


@dataclass(frozen=True, slots=True)
class RecentBooking:
    appointment_id: str
    partner_id: str
    appointment_type_name: str
    column_name: str
    start: datetime
    state: str
    changed: datetime


def _cursor(seq: int) -> str:
    return f"{_CURSOR_PREFIX}{seq}"


def _parse_cursor(text: str) -> int:
    digits = text.removeprefix(_CURSOR_PREFIX)
    if digits == text or not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        raise InvalidArgument.field("cursor", "is not a cursor this gateway issued")
    return int(digits)


def _audit_position(token: str) -> tuple[int, str] | None:
    """`at_s:id` of the last entry served, or None for the first page."""
    if not token:
        return None
    at, sep, last_id = token.partition(":")
    if not sep or not (at.isascii() and at.isdigit()) or len(at) > 18 or not last_id or len(last_id) > 64:
        raise InvalidArgument.field("page_token", "is not a token this server issued")
    return int(at), last_id


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()


def _kind(row: Row) -> str:
    return CONFIRMATION if row["mode"] == "confirmation" else TRANSFER


def _waiting(row: Row) -> bool:
    return row["state"] in PENDING and row["rescheduled_to"] is None


class PracticeDesk:
    """One practice's desk; obtain it with `await practice_desk(router, practice_id)`."""

    def __init__(self, router: PracticeRouter, practice_id: str, clock: Callable[[], float] = time.time) -> None:
        self._router = router
        self._practice = practice_id
        self._store = router.store
        self._clock = clock
        self._ctx = CallContext(partner_id=f"practice:{practice_id}")
        self._wakeup = asyncio.Event()
        feed = router.feed(practice_id)
        self._heartbeat = feed.heartbeat_seconds if feed is not None else 15.0
        if feed is not None:
            feed.listen(self._heard)

    @property
    def practice_id(self) -> str:
        return self._practice

    def _heard(self, change: Change) -> None:
        if isinstance(change, AppointmentChanged):
            self._wake()

    def _wake(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    def _now(self) -> int:
        return int(self._clock())

    async def _desk(self) -> BookingDesk:
        from gateway.routing import booking_desk

        adapter = await self._router.resolve(self._practice, self._ctx, "parent")
        desk = booking_desk(adapter)
        if desk is None:
            raise FailedPrecondition("this practice takes no bookings through the gateway")
        return desk

    async def _calendar(self, desk: BookingDesk) -> Calendar | None:
        try:
            return await desk.reader.list_calendars(self._ctx)
        except OtvError as error:  # the names are a convenience: the inbox works without the PVS
            log.warning("no calendar names for practice %s: %s", self._practice, error.code.value)
            return None

    def _item(self, tx: Tx, desk: BookingDesk, row: Row, calendar: Calendar | None) -> InboxItem:
        cipher = desk.cipher
        patient = None
        sent = read_sent(
            tx, cipher, self._practice, cipher.open(row["patient"], "appointments.patient"), row["partner"]
        )
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

    # --- the inbox ----------------------------------------------------------------------------

    async def inbox(self) -> list[InboxItem]:
        """Bookings waiting for the practice, oldest first."""
        desk = await self._desk()
        await desk.expire_due()
        calendar = await self._calendar(desk)

        def read(tx: Tx) -> list[InboxItem]:
            rows = tx.all(
                f"{APPOINTMENT_SELECT} WHERE a.practice = ? AND a.state IN (?, ?) AND a.rescheduled_to IS NULL"
                " ORDER BY a.create_s, a.id",
                (self._practice, *PENDING),
            )
            return [self._item(tx, desk, row, calendar) for row in rows]

        return await self._store.run(read)

    def watch(self, cursor: str = "", *, heartbeat_seconds: float | None = None) -> AsyncIterator[InboxEvent]:
        """With no cursor the current items first, then changes live; with a cursor the changes after
        it. `heartbeat_seconds` adds an event with neither item nor removed_id when idle that long."""
        start = _parse_cursor(cursor) if cursor else None  # a malformed cursor fails at once
        return self._follow(start, heartbeat_seconds)

    async def _follow(self, start: int | None, heartbeat: float | None) -> AsyncIterator[InboxEvent]:
        desk = await self._desk()
        await desk.expire_due()
        calendar = await self._calendar(desk)

        def begin(tx: Tx) -> tuple[int, int | None, list[InboxItem]]:
            row = tx.one(
                "SELECT MAX(seq) AS last, MIN(seq) AS oldest FROM inbox_events WHERE practice = ?", (self._practice,)
            )
            last = int(row["last"]) if row and row["last"] is not None else 0
            oldest = int(row["oldest"]) if row and row["oldest"] is not None else None
            items: list[InboxItem] = []
            if start is None:
                rows = tx.all(
                    f"{APPOINTMENT_SELECT} WHERE a.practice = ? AND a.state IN (?, ?) AND a.rescheduled_to IS NULL"
                    " ORDER BY a.create_s, a.id",
                    (self._practice, *PENDING),
                )
                items = [self._item(tx, desk, r, calendar) for r in rows]
            return last, oldest, items

        last, oldest, items = await self._store.run(begin)
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
            wakeup = self._wakeup  # taken before reading, so a change meanwhile still wakes us
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
            desk = await self._desk()
            await desk.expire_due()  # a confirmation falling due leaves the inbox while watched

    async def _after(
        self, desk: BookingDesk, last: int, calendar: Calendar | None
    ) -> list[tuple[int, InboxEvent | None]]:
        def read(tx: Tx) -> list[tuple[int, InboxEvent | None]]:
            rows = tx.all(
                "SELECT seq, appointment_id FROM inbox_events WHERE practice = ? AND seq > ? ORDER BY seq LIMIT ?",
                (self._practice, last, _BATCH),
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
                    f"{APPOINTMENT_SELECT} WHERE a.id = ? AND a.practice = ?", (appointment_id, self._practice)
                )
                if row is not None and _waiting(row):
                    out.append((seq, InboxEvent(_cursor(seq), self._item(tx, desk, row, calendar), None)))
                else:
                    out.append((seq, InboxEvent(_cursor(seq), None, appointment_id)))
            return out

        return await self._store.run(read)

    # --- decisions ----------------------------------------------------------------------------

    async def accept(self, actor: str, appointment_id: str, etag: str, request_id: str) -> InboxItem:
        """Confirm a booking waiting for confirmation: write it into the PVS, the partner sees BOOKED."""

        def change(tx: Tx, row: Row, now: int, desk: BookingDesk) -> None:
            if row["state"] != "pending_practice":
                raise FailedPrecondition(self._not_waiting(row, "confirmation"))
            self._check_etag(row, etag)
            kept = tx.execute(
                "UPDATE claims SET expire_s = NULL WHERE owner = ? AND (expire_s IS NULL OR expire_s > ?)",
                (appointment_id, now),
            )
            if kept != 1:
                raise FailedPrecondition("the booking was not confirmed in time; its time is no longer held")
            tx.execute(
                "UPDATE appointments SET state = 'writing', version = version + 1 WHERE id = ?", (appointment_id,)
            )
            self._record(tx, row, "accept", None, actor, now)

        desk = await self._decide(actor, "accept", appointment_id, etag, request_id, change)
        try:
            await desk.write_accepted(self._ctx, appointment_id)
        except OtvError as error:  # stays WRITING; recovery and the partner's next read complete it
            log.warning("writing accepted booking %s deferred: %s", appointment_id, error.code.value)
        return await self._after_decision(desk, appointment_id)

    async def reject(self, actor: str, appointment_id: str, etag: str, reason: str, request_id: str) -> InboxItem:
        """Reject a waiting booking (either kind): its time is released, the partner sees the reason."""
        reason = reason.strip()
        if not reason:
            raise InvalidArgument.field("reason", "is required: the partner shows it to the patient")
        if len(reason) > MAX_REASON:
            raise InvalidArgument.field("reason", f"is longer than {MAX_REASON} characters")

        def change(tx: Tx, row: Row, now: int, desk: BookingDesk) -> None:
            if not _waiting(row):
                raise FailedPrecondition(self._not_waiting(row, "decision"))
            self._check_etag(row, etag)
            tx.execute(
                "UPDATE appointments SET state = 'rejected', version = version + 1 WHERE id = ?", (appointment_id,)
            )
            tx.execute("DELETE FROM claims WHERE owner = ?", (appointment_id,))
            self._record(tx, row, "reject", desk.cipher.seal(reason, "decisions.reason"), actor, now)

        desk = await self._decide(actor, "reject", appointment_id, etag, request_id, change, reason)
        return await self._after_decision(desk, appointment_id)

    async def mark_transferred(
        self, actor: str, appointment_id: str, etag: str, pvs_id: str | None, request_id: str
    ) -> InboxItem:
        """Staff entered a manual booking into the PVS: it is BOOKED (final) for the partner."""
        pvs_id = (pvs_id or "").strip() or None
        if pvs_id is not None and (len(pvs_id) > MAX_PVS_ID or not pvs_id.isprintable()):
            raise InvalidArgument.field("pvs_id", f"must be 1-{MAX_PVS_ID} printable characters")

        def change(tx: Tx, row: Row, now: int, desk: BookingDesk) -> None:
            if row["state"] != "pending_transfer" or row["rescheduled_to"] is not None:
                raise FailedPrecondition(self._not_waiting(row, "manual transfer"))
            self._check_etag(row, etag)
            tx.execute(
                "UPDATE appointments SET state = 'booked', pvs_id = ?, version = version + 1 WHERE id = ?",
                (pvs_id, appointment_id),
            )
            self._record(tx, row, "transfer", None, actor, now)

        desk = await self._decide(actor, "transfer", appointment_id, etag, request_id, change, pvs_id)
        return await self._after_decision(desk, appointment_id)

    @staticmethod
    def _not_waiting(row: Row, what: str) -> str:
        if row["rescheduled_to"] is not None and row["state"] in PENDING:
            return "the booking is being moved to another time; decide on that one"
        state = row["state"]
        if state in PENDING:
            return f"the booking is not waiting for a {what}"
        return f"the booking is already decided: it is {state}"

    @staticmethod
    def _check_etag(row: Row, etag: str) -> None:
        if etag and etag != str(row["version"]):
            raise Aborted("the booking changed since you read it; read it again (etag is stale)")

    def _record(self, tx: Tx, row: Row, action: str, reason: str | None, actor: str, now: int) -> None:
        tx.execute(
            "INSERT INTO decisions (appointment_id, practice, action, reason, actor, at_s) VALUES (?, ?, ?, ?, ?, ?)",
            (row["id"], self._practice, action, reason, actor, now),
        )
        self._audit(tx, row["partner"], action, row["id"], f"ok by {actor}", now)
        note_inbox(tx, self._practice, row["id"], now)

    def _audit(self, tx: Tx, partner: str, action: str, subject: str, outcome: str, now: int) -> None:
        tx.execute(
            "INSERT INTO audit (id, at_s, partner, practice, action, subject, outcome) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (f"e{secrets.token_hex(8)}", now, partner, self._practice, action, subject, outcome),
        )

    async def _decide(
        self,
        actor: str,
        method: str,
        appointment_id: str,
        etag: str,
        request_id: str,
        change: Callable[[Tx, Row, int, BookingDesk], None],
        *extra: object,
    ) -> BookingDesk:
        """Run one decision in one transaction, once per request_id (retries answer the same)."""
        desk = await self._desk()
        await desk.expire_due()
        requester = f"{actor}@{self._practice}"
        fingerprint = _fingerprint(method, appointment_id, etag, *extra)

        def work(tx: Tx) -> None:
            tx.lock(f"inbox:{self._practice}")
            seen = tx.one(
                "SELECT method, fingerprint FROM requests WHERE partner = ? AND request_id = ?",
                (requester, request_id),
            )
            if seen is not None:
                if seen["method"] != f"practice.{method}" or seen["fingerprint"] != fingerprint:
                    raise InvalidArgument.field("request_id", "was already used for a different request")
                return
            row = tx.one("SELECT * FROM appointments WHERE id = ? AND practice = ?", (appointment_id, self._practice))
            if row is None:
                raise NotFound.field("name", "no such booking at this practice")
            now = self._now()
            change(tx, row, now, desk)
            tx.execute(
                "INSERT INTO requests (partner, request_id, method, fingerprint, result, create_s)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (requester, request_id, f"practice.{method}", fingerprint, appointment_id, now),
            )

        await self._store.run(work)
        return desk

    async def _after_decision(self, desk: BookingDesk, appointment_id: str) -> InboxItem:
        row = await desk.decided_row(appointment_id)
        assert row is not None
        desk.announce(row)
        self._wake()
        calendar = await self._calendar(desk)
        return await self._store.run(lambda tx: self._item(tx, desk, row, calendar))

    # --- what the practice reads ----------------------------------------------------------------

    async def audit(
        self,
        *,
        partner_id: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 50,
        page_token: str = "",
    ) -> tuple[list[AuditEntry], str]:
        """The practice's audit, newest first; `page_token` from the previous page."""
        if page_size < 1 or page_size > 1000:
            raise InvalidArgument.field("page_size", "must be 1-1000")
        position = _audit_position(page_token)
        sql = "SELECT id, at_s, partner, action, subject, outcome FROM audit WHERE practice = ?"
        params: list[object] = [self._practice]
        if partner_id:
            sql += " AND partner = ?"
            params.append(partner_id)
        if action:
            sql += " AND action = ?"
            params.append(action)
        if since is not None:
            sql += " AND at_s >= ?"
            params.append(from_datetime(since))
        if until is not None:
            sql += " AND at_s < ?"
            params.append(from_datetime(until))
        if position is not None:
            sql += " AND (at_s < ? OR (at_s = ? AND id < ?))"
            params += [position[0], position[0], position[1]]
        sql += " ORDER BY at_s DESC, id DESC LIMIT ?"
        params.append(page_size + 1)
        rows = await self._store.run(lambda tx: tx.all(sql, params))
        entries = [
            AuditEntry(to_datetime(r["at_s"]), r["partner"], r["action"], r["subject"], r["outcome"])
            for r in rows[:page_size]
        ]
        token = ""
        if len(rows) > page_size:
            token = f"{rows[page_size - 1]['at_s']}:{rows[page_size - 1]['id']}"
        return entries, token

    async def recent(self, limit: int = 50) -> list[RecentBooking]:
        """The latest online bookings, decisions and cancellations, most recently changed first."""
        limit = max(1, min(limit, 500))
        desk = await self._desk()
        await desk.expire_due()
        calendar = await self._calendar(desk)

        def read(tx: Tx) -> list[Row]:
            base = (
                "SELECT a.id, a.partner, a.type_id, a.column_id, a.start_s, a.state, a.create_s, a.cancel_s,"
                " d.at_s AS decided_s FROM appointments a LEFT JOIN decisions d ON d.appointment_id = a.id"
                " WHERE a.practice = ?"
            )
            found: dict[str, Row] = {}
            for order in ("a.create_s", "a.cancel_s", "d.at_s"):
                for row in tx.all(
                    f"{base} AND {order} IS NOT NULL ORDER BY {order} DESC LIMIT ?", (self._practice, limit)
                ):
                    found[row["id"]] = row
            return list(found.values())

        rows = await self._store.run(read)
        names = {t.id: t.display_name for t in calendar.appointment_types} if calendar else {}
        columns = {c.id: c.display_name for c in calendar.columns} if calendar else {}
        result = [
            RecentBooking(
                appointment_id=r["id"],
                partner_id=r["partner"],
                appointment_type_name=str(names.get(r["type_id"], r["type_id"])),
                column_name=str(columns.get(r["column_id"], r["column_id"])),
                start=to_datetime(r["start_s"]),
                state=r["state"],
                changed=to_datetime(max(r["create_s"], r["cancel_s"] or 0, r["decided_s"] or 0)),
            )
            for r in rows
        ]
        result.sort(key=lambda b: (b.changed, b.appointment_id), reverse=True)
        return result[:limit]

    # --- licences -------------------------------------------------------------------------------

    async def licences(self) -> list[PartnerLicence]:
        """The partners the gateway's operator licensed for this practice, with what each may use."""
        rows = await self._store.run(
            lambda tx: tx.all(
                "SELECT g.partner, g.services, p.display_name FROM grants g JOIN partners p ON p.id = g.partner"
                " WHERE g.practice = ? ORDER BY g.partner",
                (self._practice,),
            )
        )
        return [_licence(r) for r in rows if not _practice_principal(r["services"])]

    async def set_licence(self, actor: str, partner_id: str, services: frozenset[str]) -> PartnerLicence:
        """Grant or withdraw a partner's services at this practice; its next call is admitted by them."""
        unknown = sorted(s for s in services if s not in SERVICES)
        if unknown:
            raise InvalidArgument.field("services", f"names unknown services {unknown}; choose from {SERVICES}")
        now = self._now()

        def work(tx: Tx) -> Row:
            row = tx.one(
                "SELECT g.partner, g.services, p.display_name FROM grants g JOIN partners p ON p.id = g.partner"
                " WHERE g.practice = ? AND g.partner = ?",
                (self._practice, partner_id),
            )
            if row is None or _practice_principal(row["services"]):
                raise NotFound.field("partner", "is not a partner licensed for this practice by the gateway's operator")
            listed = ",".join(s for s in SERVICES if s in services)
            tx.execute(
                "UPDATE grants SET services = ? WHERE partner = ? AND practice = ?",
                (listed, partner_id, self._practice),
            )
            bump_version(tx)
            self._audit(tx, partner_id, "licence", listed or "none", f"ok by {actor}", now)
            return {**row, "services": listed}

        return _licence(await self._store.run(work))


def _services(text: str) -> frozenset[str]:
    names = {s for s in text.split(",") if s}
    return frozenset(SERVICES) if "*" in names else frozenset(s for s in names if s in SERVICES)


def _practice_principal(services: str) -> bool:
    """A grant naming a PVS-only service belongs to the practice's own PVS, not to a partner."""
    return any(s in PVS_SERVICES for s in services.split(","))


def _licence(row: Row) -> PartnerLicence:
    return PartnerLicence(row["partner"], row["display_name"], _services(row["services"]))


_DESKS: weakref.WeakKeyDictionary[PracticeRouter, dict[str, PracticeDesk]] = weakref.WeakKeyDictionary()


async def practice_desk(router: PracticeRouter, practice_id: str) -> PracticeDesk:
    """The desk of one practice of this gateway; NotFound naming `parent` for an unknown practice."""
    if practice_id not in router.practice_ids:
        raise NotFound.field("parent", "no practice with this id is connected to this gateway")
    desks = _DESKS.setdefault(router, {})
    desk = desks.get(practice_id)
    if desk is None:
        desk = PracticeDesk(router, practice_id)
        desks[practice_id] = desk
    return desk
