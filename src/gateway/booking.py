"""The booking desk: holds, bookings, cancellations and moves for one practice, never a double booking.

The gateway, not the PVS, keeps what online booking needs beyond a calendar: holds with expiry,
idempotency records, the booking mode, and **claims**: the calendar time it has promised (a valid
hold, a booking being written, waiting for the practice, or booked through it). Claims live in
the shared state store; taking one locks the column (`tx.lock`) and checks for overlap in the same
transaction, so among any number of concurrent attempts on overlapping time, across any number of
gateway processes, exactly one wins; the others get ABORTED. An expired hold's claim is simply
ignored from its expiry on: nothing has to run for the slot to become free. Partners see claims in
busy time, free time and slots as they would see appointments (`partner_availability.py`).

Booking modes, per practice and appointment type (a PVS without a writer is always manual):
- automatic: the appointment is written to the PVS at once (state WRITING, then BOOKED);
- confirmation: it waits (PENDING_PRACTICE) until the practice accepts it, then is written, or
  rejects it (REJECTED, time released); undecided after `confirm_within` it is rejected by
  itself: its claim expires then like a hold's, and the record says so on the next read;
- manual: it waits in the practice inbox (PENDING_TRANSFER) until staff mark it transferred.
A practice whose PVS has no patient lookup takes the patient's details instead of a patient
resource (`SlotRequest.patient_details`; GetPractice says which): such a hold or booking keeps them
sealed in `patient_details` under an id made up for it (`DETAILS_PREFIX`, never a PVS id, never
shown to the partner), and is always manual, since there is no PVS patient to write it for.
The practice's side (the inbox, decisions, its audit and licences) is `practice_desk.py`; every
change to a booking in the inbox is numbered in `inbox_events` in the same transaction
(`note_inbox`), which is what watching the inbox resumes from.

The desk decides; its parts are the stored records (`booking_records.py`), the checks before a
decision (`booking_checks.py`), and completing a decision in the PVS crash-safely, moves included
(`booking_completion.py`), which every call, retry and read runs before it answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime

from gateway.booking_checks import BookingChecks
from gateway.booking_completion import BookingCompletion
from gateway.booking_records import (
    APPOINTMENT_SELECT,
    DETAILS_PREFIX,
    MANUAL,
    PENDING,
    BookingPolicy,
    BookingRecords,
    PatientIds,
    fresh_id,
    note_inbox,
    page_position,
    request_fingerprint,
    with_details,
)
from gateway.encryption import FieldCipher
from gateway.partner_availability import PartnerAvailability
from gateway.practice_reader import PracticeReader
from gateway.state_store import Row, StateStore, Tx
from otv_sdk.changes import AppointmentChanged, Change
from otv_sdk.errors import Aborted, FailedPrecondition
from otv_sdk.models import Appointment, ColumnIntervals, Hold, Interval, Slot
from otv_sdk.ports import Adapter, AppointmentQuery, CallContext, Page, SlotQuery, SlotRequest, WriterPort
from otv_sdk.timeline import IntervalArray, from_datetime, to_datetime

__all__ = [
    "APPOINTMENT_SELECT",
    "DETAILS_PREFIX",
    "PENDING",
    "BookingDesk",
    "BookingPolicy",
    "PatientIds",
    "note_inbox",
    "with_details",
]


class BookingDesk(WriterPort):
    """The WriterService of one practice, on top of its adapter's reader and calendar writer."""

    def __init__(
        self,
        practice_id: str,
        adapter: Adapter,
        patients: PatientIds,
        store: StateStore,
        policy: BookingPolicy,
        cipher: FieldCipher,
        clock: Callable[[], float] = time.time,
        announce: Callable[[Change, str], None] | None = None,
    ) -> None:
        self._cipher = cipher
        self._announce_to = announce
        self._practice = practice_id
        if not isinstance(adapter.reader, PracticeReader):
            raise TypeError("a booking desk needs the gateway's reader of the practice (PracticeReader)")
        self._adapter = adapter
        self._reader = adapter.reader
        self._store = store
        self._policy = policy
        self._clock = clock
        # Busy time, free time and slots as partners see them: the PVS's, with this desk's claims in.
        self.availability = PartnerAvailability(self._reader, self.claimed, cipher)
        self._records = BookingRecords(practice_id, patients, policy, cipher, clock)
        self._checks = BookingChecks(
            practice_id, adapter, self._reader, patients, self._records, policy, cipher, self.availability
        )
        self._completion = BookingCompletion(practice_id, adapter, store, self._records, policy, cipher)

    def _now(self) -> int:
        return int(self._clock())

    @property
    def cipher(self) -> FieldCipher:
        return self._cipher

    @property
    def reader(self) -> PracticeReader:
        return self._reader

    @property
    def takes_details(self) -> bool:
        """The practice's PVS has no patient lookup: patients come as details (GetPractice says so)."""
        return self._checks.takes_details

    async def write_accepted(self, ctx: CallContext, appointment_id: str) -> None:
        """Write a booking the practice accepted (now WRITING) into the PVS; raises if it cannot now,
        and the write stays recorded for recovery and the partner's next read."""
        await self._completion.write(ctx, appointment_id)

    async def recover(self, ctx: CallContext) -> int:
        """Complete what a crash interrupted (see booking_completion.py); returns how many
        appointments were brought to rest."""
        return await self._completion.recover(ctx)

    # --- answering the partner and the practice -------------------------------------------------

    def _appointment(self, ctx: CallContext, row: Row) -> Appointment:
        return self._records.appointment(ctx, row)

    def announce(self, row: Row) -> None:
        """Tell the appointment's partner (its change feed) what the practice or the gateway did."""
        if self._announce_to is not None:
            ctx = CallContext(partner_id=row["partner"])
            self._announce_to(AppointmentChanged(self._appointment(ctx, row)), row["partner"])

    async def expire_due(self) -> None:
        """Reject confirmations the practice did not decide within `confirm_within` (lazily, on reads):
        their claims already lapsed at that moment, this records it and tells the partner why."""
        for appointment_id in await self._completion.expire_due():
            row = await self.decided_row(appointment_id)
            if row is not None:
                self.announce(row)

    async def decided_row(self, appointment_id: str) -> Row | None:
        """The appointment's record with the practice's decision reason (`decision_reason`)."""
        return await self._store.run(
            lambda tx: tx.one(
                f"{APPOINTMENT_SELECT} WHERE a.id = ? AND a.practice = ?", (appointment_id, self._practice)
            )
        )

    async def _load(self, ctx: CallContext, appointment_id: str) -> Appointment:
        row = await self._store.run(lambda tx: self._records.own(tx, ctx, "appointments", appointment_id))
        return self._appointment(ctx, row)

    async def _finish(self, ctx: CallContext, appointment_id: str) -> Appointment:
        """After the record is committed, or on a retry: do the PVS work now if the PVS can be
        reached. What fails stays recorded (WRITING, or a move not yet complete) and is retried."""
        await self._completion.settle(ctx, appointment_id)
        return await self._load(ctx, appointment_id)

    async def _own_settled(self, ctx: CallContext, appointment_id: str) -> Row:
        """The partner's appointment after its unfinished PVS work is done; raises if that cannot be
        done now, so a change never goes ahead on top of it."""
        await self.expire_due()
        row, unsettled = await self._store.run(lambda tx: self._completion.own_unsettled(tx, ctx, appointment_id))
        if not unsettled:
            return row
        await self._completion.settle(ctx, appointment_id, strict=True)
        return await self._store.run(lambda tx: self._records.own(tx, ctx, "appointments", appointment_id))

    # --- WriterPort ---------------------------------------------------------------------------

    async def hold_slot(self, ctx: CallContext, slot: SlotRequest) -> Hold:
        slot = await self._checks.identified(ctx, slot)
        fingerprint = request_fingerprint("hold", slot)  # with details: the fingerprint covers them
        known = await self._store.run(lambda tx: self._records.replay(tx, ctx, "hold", fingerprint))
        if known is None:
            _, interval = await self._checks.bookable(ctx, slot)

            def work(tx: Tx) -> str:
                again = self._records.replay(tx, ctx, "hold", fingerprint)
                if again is not None:
                    return again
                hold_id = fresh_id("h")
                start, end = from_datetime(interval.start), from_datetime(interval.end)
                expire = self._now() + int(self._policy.hold.total_seconds())
                self._records.claim(tx, slot.column_id, start, end, hold_id, expire)
                kept = self._checks.keep_details(tx, ctx, slot)
                tx.execute(
                    "INSERT INTO holds (id, practice, partner, column_id, type_id, start_s, end_s, patient, expire_s,"
                    " state, create_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', ?)",
                    (hold_id, self._practice, ctx.partner_id, slot.column_id, slot.appointment_type_id, start, end,
                     self._cipher.seal(kept.patient_id, "holds.patient"), expire, self._now()),
                )  # fmt: skip
                self._records.remember(tx, ctx, "hold", fingerprint, hold_id)
                self._records.audit(tx, ctx, "hold", hold_id)
                return hold_id

            known = await self._store.run(work)
        row = await self._store.run(lambda tx: self._records.own(tx, ctx, "holds", known))
        return self._records.hold(ctx, row)

    async def confirm_hold(self, ctx: CallContext, hold_id: str) -> Appointment:
        fingerprint = request_fingerprint("confirm", hold_id)

        def work(tx: Tx) -> str:
            # Handing the hold's claim over changes the column's claims: serialise it with every
            # other change to them (as `_claim` does), then look at the request and the hold as
            # they are under that lock.
            tx.lock(f"{self._practice}/{self._records.own(tx, ctx, 'holds', hold_id)['column_id']}")
            again = self._records.replay(tx, ctx, "confirm", fingerprint)
            if again is not None:
                return again
            hold = self._records.own(tx, ctx, "holds", hold_id)
            if hold["state"] != "active":
                raise FailedPrecondition(f"the hold is already {hold['state']}")
            if hold["expire_s"] <= self._now():
                raise FailedPrecondition(f"the hold expired at {to_datetime(hold['expire_s']).isoformat()}")
            appointment_id = fresh_id("a")
            patient = self._cipher.open(hold["patient"], "holds.patient")
            type_mode = self._checks.mode_for(hold["type_id"], patient)
            slot = SlotRequest(hold["type_id"], hold["column_id"], to_datetime(hold["start_s"]), patient)
            interval = Interval(to_datetime(hold["start_s"]), to_datetime(hold["end_s"]))
            self._records.insert_appointment(tx, ctx, appointment_id, slot, interval, type_mode)
            # The hold's claim becomes the appointment's: no gap in which the time is free.
            handed = tx.execute(
                "UPDATE claims SET owner = ?, expire_s = ? WHERE owner = ?",
                (appointment_id, self._records.claim_expiry(type_mode), hold_id),
            )
            if handed != 1:
                raise Aborted("the hold's time was released meanwhile; hold the slot again")
            tx.execute("UPDATE holds SET state = 'confirmed', appointment = ? WHERE id = ?", (appointment_id, hold_id))
            self._records.remember(tx, ctx, "confirm", fingerprint, appointment_id)
            self._records.audit(tx, ctx, "confirm", appointment_id)
            return appointment_id

        appointment_id = await self._store.run(work)
        return await self._finish(ctx, appointment_id)

    async def release_hold(self, ctx: CallContext, hold_id: str) -> None:
        def work(tx: Tx) -> None:
            hold = self._records.own(tx, ctx, "holds", hold_id)
            if hold["state"] == "released":
                return
            if hold["state"] != "active":
                raise FailedPrecondition(f"the hold is already {hold['state']}")
            tx.execute("UPDATE holds SET state = 'released' WHERE id = ?", (hold_id,))
            tx.execute("DELETE FROM claims WHERE owner = ?", (hold_id,))
            self._records.audit(tx, ctx, "release", hold_id)

        await self._store.run(work)

    async def book_appointment(self, ctx: CallContext, slot: SlotRequest) -> Appointment:
        slot = await self._checks.identified(ctx, slot)
        fingerprint = request_fingerprint("book", slot)  # with details: the fingerprint covers them
        known = await self._store.run(lambda tx: self._records.replay(tx, ctx, "book", fingerprint))
        if known is not None:
            return await self._finish(ctx, known)
        _, interval = await self._checks.bookable(ctx, slot)
        mode = (
            MANUAL
            if slot.patient_details is not None
            else self._checks.mode_for(slot.appointment_type_id, slot.patient_id)
        )

        def work(tx: Tx) -> str:
            again = self._records.replay(tx, ctx, "book", fingerprint)
            if again is not None:
                return again
            appointment_id = fresh_id("a")
            start, end = from_datetime(interval.start), from_datetime(interval.end)
            self._records.claim(tx, slot.column_id, start, end, appointment_id, self._records.claim_expiry(mode))
            self._records.insert_appointment(
                tx, ctx, appointment_id, self._checks.keep_details(tx, ctx, slot), interval, mode
            )
            self._records.remember(tx, ctx, "book", fingerprint, appointment_id)
            self._records.audit(tx, ctx, "book", appointment_id)
            return appointment_id

        appointment_id = await self._store.run(work)
        return await self._finish(ctx, appointment_id)

    def _check_change(self, row: Row, etag: str) -> None:
        if etag and etag != str(row["version"]):
            raise Aborted("the appointment changed since you read it; read it again (etag is stale)")
        if row["state"] in ("cancelled", "rejected", "rescheduled"):
            raise FailedPrecondition(f"the appointment is already {row['state']}")
        if row["state"] == "writing":
            raise Aborted("the appointment is being written to the practice's calendar; read it again")
        if row["rescheduled_to"] is not None:
            raise FailedPrecondition(f"the appointment is already being moved to {row['rescheduled_to']}")
        if self._now() > row["start_s"] - int(self._policy.cancellation_deadline.total_seconds()):
            hours = int(self._policy.cancellation_deadline.total_seconds() // 3600)
            raise FailedPrecondition(f"online changes are possible until {hours} hours before the appointment")

    async def cancel_appointment(self, ctx: CallContext, appointment_id: str, etag: str) -> Appointment:
        fingerprint = request_fingerprint("cancel", appointment_id, etag)
        replayed = await self._store.run(lambda tx: self._records.replay(tx, ctx, "cancel", fingerprint))
        if replayed is not None:
            return await self._load(ctx, appointment_id)
        row = await self._own_settled(ctx, appointment_id)  # a pending write or move goes first
        self._check_change(row, etag)
        writer = self._adapter.calendar_writer
        if row["pvs_id"] is not None and writer is not None:
            await writer.delete_appointment(ctx, row["pvs_id"])  # idempotent: a retry after a crash is safe

        def work(tx: Tx) -> None:
            again = self._records.replay(tx, ctx, "cancel", fingerprint)
            if again is not None:
                return
            current = self._records.own(tx, ctx, "appointments", appointment_id)
            self._check_change(current, etag)
            changed = tx.execute(
                "UPDATE appointments SET state = 'cancelled', cancel_s = ?, version = version + 1"
                " WHERE id = ? AND version = ?",
                (self._now(), appointment_id, current["version"]),
            )
            if changed != 1:
                raise Aborted("the appointment changed meanwhile; read it again")
            tx.execute("DELETE FROM claims WHERE owner = ?", (appointment_id,))
            if current["state"] in PENDING:
                note_inbox(tx, self._practice, appointment_id, self._now())
            self._records.remember(tx, ctx, "cancel", fingerprint, appointment_id)
            self._records.audit(tx, ctx, "cancel", appointment_id)

        await self._store.run(work)
        return await self._load(ctx, appointment_id)

    async def reschedule_appointment(
        self, ctx: CallContext, appointment_id: str, etag: str, start: datetime, column_id: str | None
    ) -> Appointment:
        fingerprint = request_fingerprint("reschedule", appointment_id, etag, start.isoformat(), column_id)
        known = await self._store.run(lambda tx: self._records.replay(tx, ctx, "reschedule", fingerprint))
        if known is not None:
            return await self._finish(ctx, known)  # completes the move if a crash interrupted it
        old = await self._own_settled(ctx, appointment_id)
        self._check_change(old, etag)
        patient = self._cipher.open(old["patient"], "appointments.patient")
        slot = SlotRequest(old["type_id"], column_id or old["column_id"], start, patient)
        _, interval = await self._checks.bookable(ctx, slot, replacing=old)
        mode = self._checks.mode_for(slot.appointment_type_id, patient)

        def secure(tx: Tx) -> str:
            again = self._records.replay(tx, ctx, "reschedule", fingerprint)
            if again is not None:
                return again
            current = self._records.own(tx, ctx, "appointments", appointment_id)
            self._check_change(current, etag)
            new_id = fresh_id("a")
            lo, hi = from_datetime(interval.start), from_datetime(interval.end)
            self._records.claim(
                tx, slot.column_id, lo, hi, new_id, self._records.claim_expiry(mode), besides=appointment_id
            )
            self._records.insert_appointment(tx, ctx, new_id, slot, interval, mode, rescheduled_from=appointment_id)
            # The move is decided here, durably: the old one keeps its state, claim and PVS entry
            # but points at its successor, so whoever meets either of them next completes the move.
            linked = tx.execute(
                "UPDATE appointments SET rescheduled_to = ?, version = version + 1 WHERE id = ? AND version = ?",
                (new_id, appointment_id, current["version"]),
            )
            if linked != 1:
                raise Aborted("the appointment changed meanwhile; read it again")
            if current["state"] in PENDING:
                note_inbox(tx, self._practice, appointment_id, self._now())
            self._records.remember(tx, ctx, "reschedule", fingerprint, new_id)
            self._records.audit(tx, ctx, "reschedule", new_id)
            return new_id

        new_id = await self._store.run(secure)
        # The new time is written first, then the old one is released (see _complete_move).
        return await self._finish(ctx, new_id)

    async def get_appointment(self, ctx: CallContext, appointment_id: str) -> Appointment:
        await self.expire_due()
        row, unsettled = await self._store.run(lambda tx: self._completion.own_unsettled(tx, ctx, appointment_id))
        if unsettled:
            return await self._finish(ctx, appointment_id)
        return self._appointment(ctx, row)

    async def list_appointments(self, ctx: CallContext, query: AppointmentQuery) -> Page[Appointment]:
        await self.expire_due()
        after_start, after_id = page_position(query.page.page_token)
        lo = from_datetime(query.start) if query.start else -(2**62)
        hi = from_datetime(query.end) if query.end else 2**62
        states = "" if query.include_cancelled else " AND a.state NOT IN ('cancelled', 'rejected', 'rescheduled')"

        def work(tx: Tx) -> list[Row]:
            return tx.all(
                f"{APPOINTMENT_SELECT} WHERE a.practice = ? AND a.partner = ? AND a.start_s >= ? AND a.start_s < ?"
                f"{states} AND (a.start_s > ? OR (a.start_s = ? AND a.id > ?)) ORDER BY a.start_s, a.id LIMIT ?",
                (self._practice, ctx.partner_id, lo, hi, after_start, after_start, after_id, query.page.page_size + 1),
            )

        rows = await self._store.run(work)
        items = [self._appointment(ctx, r) for r in rows[: query.page.page_size]]
        more = len(rows) > query.page.page_size
        token = f"{rows[query.page.page_size - 1]['start_s']}:{rows[query.page.page_size - 1]['id']}" if more else ""
        return Page(items, token)

    # --- the availability partners see (gateway/partner_availability.py) -----------------------

    async def claimed(
        self, column_ids: Sequence[str], lo: int, hi: int, ignore: str | None = None, *, written: bool = True
    ) -> dict[str, IntervalArray]:
        """Time the gateway holds in [lo, hi) per column, one interval per claim sorted by start:
        valid holds and its own bookings (all columns when none are named). `ignore` leaves out one
        owner's claim; `written=False` leaves out bookings already written into the PVS (booked, with
        a PVS id), which the PVS lists itself."""
        now = self._now()
        sql = "SELECT c.column_id, c.start_s, c.end_s FROM claims c"
        if not written:
            sql += " LEFT JOIN appointments a ON a.id = c.owner"
        sql += (
            " WHERE c.practice = ? AND c.start_s < ? AND c.end_s > ?"
            " AND (c.expire_s IS NULL OR c.expire_s > ?) AND c.owner <> ?"
        )
        if not written:
            sql += " AND (a.id IS NULL OR a.state <> 'booked' OR a.pvs_id IS NULL)"
        rows = await self._store.run(lambda tx: tx.all(sql, (self._practice, hi, lo, now, ignore or "")))
        claimed: dict[str, list[tuple[int, int]]] = {}
        for row in rows:
            if not column_ids or row["column_id"] in column_ids:
                claimed.setdefault(row["column_id"], []).append((row["start_s"], row["end_s"]))
        return {c: IntervalArray.of(v).sorted() for c, v in claimed.items()}

    async def get_free_time(
        self, ctx: CallContext, window: Interval, column_ids: Sequence[str], ignore: str | None = None
    ) -> list[ColumnIntervals]:
        return await self.availability.get_free_time(ctx, window, column_ids, ignore)

    async def find_slots(self, ctx: CallContext, query: SlotQuery, ignore: Row | None = None) -> Page[Slot]:
        return await self.availability.find_slots(ctx, query, ignore["id"] if ignore else None)
