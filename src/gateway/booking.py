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

Crash safety: the appointment record and its claim are committed before the PVS is written, and
the PVS write is idempotent on the appointment id. A crash after the write but before the record
says BOOKED leaves a WRITING record whose claim still blocks the time; `recover()` (run at start)
and any retry complete the write, which the PVS recognises. So no confirmed booking is lost and
no slot is ever both booked and free.

A move is decided in one transaction: the new appointment and its claim are committed together
with `old.rescheduled_to = new`, while the old one stays as it was (booked, claimed, in the PVS).
From then on the move is only ever completed, never undone, by one idempotent step
(`_complete_move`): write the new one; once it is no longer WRITING (booked, or waiting in the
practice inbox), delete the old PVS entry, then record the old one RESCHEDULED and drop its claim.
That step runs on the normal path, on a retry with the same request_id, on GetAppointment of
either appointment, and in `recover()`, which finds half-done moves as well as WRITING records.
Killed at any point, at least one of the two holds the patient's time until the step has finished;
after it exactly one does. While the PVS cannot be reached, the old one stays booked and linked,
and changes to either are refused until the move is complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gateway.encryption import FieldCipher
from gateway.partner_availability import PartnerAvailability
from gateway.patient_matching import SentPatient, store_sent
from gateway.practice_reader import PracticeReader
from gateway.state_store import Row, StateStore, Tx
from otv_rules.wallclock import zone
from otv_sdk.changes import AppointmentChanged, Change
from otv_sdk.errors import Aborted, FailedPrecondition, FieldViolation, InvalidArgument, NotFound, OtvError
from otv_sdk.models import (
    Appointment,
    AppointmentState,
    AppointmentType,
    Capability,
    ColumnIntervals,
    Hold,
    Interval,
    Slot,
)
from otv_sdk.ports import (
    Adapter,
    AppointmentQuery,
    CalendarEntry,
    CallContext,
    Page,
    PageRequest,
    SlotQuery,
    SlotRequest,
    WriterPort,
)
from otv_sdk.timeline import IntervalArray, from_datetime, subtract, to_datetime, union

__all__ = [
    "APPOINTMENT_SELECT",
    "DETAILS_PREFIX",
    "BookingDesk",
    "BookingPolicy",
    "PatientIds",
    "note_inbox",
    "with_details",
]

log = logging.getLogger("otv.gateway.booking")

AUTOMATIC, CONFIRMATION, MANUAL = "automatic", "confirmation", "manual"
# Open claims: the appointment states whose time the gateway still holds.
_HOLDING = ("writing", "pending_practice", "pending_transfer", "booked")
PENDING = ("pending_practice", "pending_transfer")
# Appointments with the practice's decision, whose reason a rejected one shows its partner.
APPOINTMENT_SELECT = (
    "SELECT a.*, d.reason AS decision_reason FROM appointments a LEFT JOIN decisions d ON d.appointment_id = a.id"
)
_INBOX_RETENTION = 10_000  # inbox events kept per practice for resuming watchers
EXPIRED_REASON = "not confirmed by the practice within {hours} hours"
# The patient of a hold or booking made with the patient's details: this prefix and a random token.
DETAILS_PREFIX = "otv-details:"


def with_details(patient_id: str) -> bool:
    """Whether a hold's or booking's patient is one sent as details (no PVS patient)."""
    return patient_id.startswith(DETAILS_PREFIX)


def note_inbox(tx: Tx, practice_id: str, appointment_id: str, now: int) -> int:
    """Number a change to a booking in (or leaving) the practice inbox; returns its sequence number.
    Call it in the transaction that makes the change, so the two commit or vanish together."""
    tx.lock(f"inbox:{practice_id}")
    last = tx.one("SELECT MAX(seq) AS seq FROM inbox_events WHERE practice = ?", (practice_id,))
    seq = (int(last["seq"]) if last and last["seq"] is not None else 0) + 1
    tx.execute(
        "INSERT INTO inbox_events (practice, seq, appointment_id, at_s) VALUES (?, ?, ?, ?)",
        (practice_id, seq, appointment_id, now),
    )
    if seq % 100 == 0:
        tx.execute("DELETE FROM inbox_events WHERE practice = ? AND seq <= ?", (practice_id, seq - _INBOX_RETENTION))
    return seq


@dataclass(frozen=True, slots=True)
class BookingPolicy:
    default_mode: str = AUTOMATIC
    modes: dict[str, str] = field(default_factory=dict)
    hold: timedelta = timedelta(minutes=15)
    cancellation_deadline: timedelta = timedelta(hours=24)
    category: str = "online"
    grid_minutes: int = 5  # slot starts every N minutes of local time, from the practice's configuration
    confirm_within: timedelta = timedelta(hours=48)  # a confirmation not decided by then is rejected

    def mode_for(self, type_id: str, can_write: bool) -> str:
        mode = self.modes.get(type_id, self.default_mode)
        return mode if can_write else MANUAL


class PatientIds:
    """Translation between partner-scoped and PVS patient ids (see privacy.py), as the desk needs it.

    `inward` raises NotFound naming `patient` for an id this partner was never given, and for a
    patient who denied consent: a partner cannot book for someone invisible to it.
    """

    def __init__(
        self,
        inward: Callable[[CallContext, str], Awaitable[str]],
        outward: Callable[[CallContext, str], str],
    ) -> None:
        self.inward = inward
        self.outward = outward


def _fingerprint(method: str, *parts: object) -> str:
    return hashlib.sha256(json.dumps([method, *[str(p) for p in parts]]).encode()).hexdigest()


def _new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(8)}"


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
        self._expiry_hint = 0  # no confirmation can fall due before this time (see expire_due)
        self._practice = practice_id
        if not isinstance(adapter.reader, PracticeReader):
            raise TypeError("a booking desk needs the gateway's reader of the practice (PracticeReader)")
        self._adapter = adapter
        self._reader = adapter.reader
        self._patients = patients
        self._store = store
        self._policy = policy
        self._clock = clock
        # Busy time, free time and slots as partners see them: the PVS's, with this desk's claims in.
        self.availability = PartnerAvailability(self._reader, self.claimed, cipher)

    def _now(self) -> int:
        return int(self._clock())

    @property
    def cipher(self) -> FieldCipher:
        return self._cipher

    @property
    def reader(self) -> PracticeReader:
        return self._reader

    async def write_accepted(self, ctx: CallContext, appointment_id: str) -> None:
        """Write a booking the practice accepted (now WRITING) into the PVS; raises if it cannot now,
        and the write stays recorded for recovery and the partner's next read."""
        await self._write(ctx, appointment_id)

    # --- checks -------------------------------------------------------------------------------

    async def _bookable(
        self, ctx: CallContext, slot: SlotRequest, replacing: Row | None = None
    ) -> tuple[AppointmentType, Interval]:
        """The type and interval of a slot a partner may book now, or the error saying why not."""
        reader = self._reader
        calendar = await reader.list_calendars(ctx)
        kind = next((t for t in calendar.appointment_types if t.id == slot.appointment_type_id), None)
        if kind is None:
            raise InvalidArgument.field("appointment_type", "is not an appointment type of this practice")
        if slot.column_id not in calendar.column_ids():
            raise InvalidArgument.field("column", "is not a column of this practice")
        if slot.column_id not in kind.column_ids:
            raise InvalidArgument.field("column", "does not offer this appointment type")
        grid = self._policy.grid_minutes * 60
        profile = await reader.get_practice(ctx)
        start = from_datetime(slot.start)
        offset = slot.start.astimezone(zone(profile.time_zone)).utcoffset()
        assert offset is not None
        if (start + int(offset.total_seconds())) % grid:
            raise InvalidArgument.field("start_time", f"is not on the practice's {grid // 60}-minute slot grid")
        now = self._now()
        if start < now:
            raise FailedPrecondition("the slot lies in the past")
        if start < now + int(kind.min_lead.total_seconds()):
            raise FailedPrecondition(f"the slot is sooner than the {kind.min_lead} notice this appointment type needs")
        if kind.max_horizon is not None and start > now + int(kind.max_horizon.total_seconds()):
            raise FailedPrecondition("the slot is beyond how far ahead this appointment type can be booked online")
        interval = Interval(slot.start, slot.start + kind.duration)
        probe = SlotQuery(
            kind.id, Interval(slot.start, slot.start + timedelta(seconds=1)), (slot.column_id,), PageRequest(1)
        )
        offered = await self.find_slots(ctx, probe, ignore=replacing)
        offered_here = any(s.start == slot.start for s in offered.items)
        if not offered_here and (replacing is None or not await self._free_besides(ctx, kind, slot, replacing)):
            raise FailedPrecondition("the slot is not free (booked, held, absent or reserved)")
        return kind, interval

    async def _free_besides(self, ctx: CallContext, kind: AppointmentType, slot: SlotRequest, old: Row) -> bool:
        """A move onto time the moved appointment itself occupies: is it free once that is gone?
        Free as partners see it: other claims (holds, bookings not yet in the PVS) are not."""
        if old["column_id"] != slot.column_id:
            return False
        need = Interval(slot.start, slot.start + kind.duration + kind.buffer)
        (free,) = await self.get_free_time(ctx, need, [slot.column_id], ignore=old["id"])
        covered = union(free.intervals, IntervalArray.of([(old["start_s"], old["end_s"])]))
        wanted = IntervalArray.of([(from_datetime(need.start), from_datetime(need.end))])
        return len(subtract(wanted, covered)) == 0

    async def _patient(self, ctx: CallContext, scoped: str) -> str:
        return await self._patients.inward(ctx, scoped)

    @property
    def takes_details(self) -> bool:
        """The practice's PVS has no patient lookup: patients come as details (GetPractice says so)."""
        return Capability.PATIENT_LOOKUP not in self._adapter.capabilities

    async def _identified(self, ctx: CallContext, slot: SlotRequest) -> SlotRequest:
        """The slot with its patient as the desk keeps it: the PVS id, or the details as sent.
        Each practice takes one of the two ways; the other is FAILED_PRECONDITION naming its field."""
        if slot.patient_details is not None:
            if not self.takes_details:
                raise FailedPrecondition(
                    "patient_details: this practice identifies patients through PatientLookupService;"
                    " call FindOrCreatePatient and send its resource name as patient",
                    violations=[FieldViolation("patient_details", "not taken by this practice; send patient")],
                )
            return SlotRequest(slot.appointment_type_id, slot.column_id, slot.start, "", slot.patient_details)
        if self.takes_details:
            raise FailedPrecondition(
                "patient: this practice's PVS has no patient lookup; send the patient's details as patient_details",
                violations=[FieldViolation("patient", "not taken by this practice; send patient_details")],
            )
        return SlotRequest(
            slot.appointment_type_id, slot.column_id, slot.start, await self._patient(ctx, slot.patient_id)
        )

    def _keep_details(self, tx: Tx, ctx: CallContext, slot: SlotRequest) -> SlotRequest:
        """For a slot with details: keep them sealed under a new made-up patient id (in `tx`)."""
        details = slot.patient_details
        if details is None:
            return slot
        patient_id = f"{DETAILS_PREFIX}{secrets.token_hex(12)}"
        sent = SentPatient(
            details.given_name,
            details.family_name,
            details.birth_date,
            details.contacts,
            details.gender,
            details.address,
            details.note,
        )
        store_sent(tx, self._cipher, self._practice, patient_id, ctx.partner_id, sent, self._now())
        return SlotRequest(slot.appointment_type_id, slot.column_id, slot.start, patient_id)

    def _mode_for(self, type_id: str, patient_id: str) -> str:
        """The booking mode; a patient sent as details has no PVS record to write for: manual."""
        if with_details(patient_id):
            return MANUAL
        return self._policy.mode_for(type_id, self._adapter.calendar_writer is not None)

    def _outward(self, ctx: CallContext, patient_id: str) -> str:
        """The patient as the partner sees it; empty for one sent as details."""
        return "" if with_details(patient_id) else self._patients.outward(ctx, patient_id)

    # --- store operations (run inside one transaction each) -----------------------------------

    def _replay(self, tx: Tx, ctx: CallContext, method: str, fingerprint: str) -> str | None:
        """The id a request with this request_id already produced, or None for a new request."""
        if ctx.request_id is None:
            return None
        row = tx.one(
            "SELECT method, fingerprint, result FROM requests WHERE partner = ? AND request_id = ?",
            (ctx.partner_id, ctx.request_id),
        )
        if row is None:
            return None
        if row["method"] != method or row["fingerprint"] != fingerprint:
            raise InvalidArgument.field("request_id", "was already used for a different request")
        return str(row["result"])

    def _remember(self, tx: Tx, ctx: CallContext, method: str, fingerprint: str, result: str) -> None:
        if ctx.request_id is not None:
            tx.execute(
                "INSERT INTO requests (partner, request_id, method, fingerprint, result, create_s)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (ctx.partner_id, ctx.request_id, method, fingerprint, result, self._now()),
            )

    def _claim(
        self, tx: Tx, column_id: str, start: int, end: int, owner: str, expire: int | None, besides: str | None = None
    ) -> None:
        tx.lock(f"{self._practice}/{column_id}")
        now = self._now()
        taken = tx.one(
            "SELECT id FROM claims WHERE practice = ? AND column_id = ? AND start_s < ? AND end_s > ?"
            " AND (expire_s IS NULL OR expire_s > ?) AND owner <> ?",
            (self._practice, column_id, end, start, now, besides or ""),
        )
        if taken is not None:
            raise Aborted("the slot was just taken or is held by someone else; choose another")
        tx.execute(
            "DELETE FROM claims WHERE practice = ? AND column_id = ? AND expire_s IS NOT NULL AND expire_s <= ?",
            (self._practice, column_id, now),
        )
        tx.execute(
            "INSERT INTO claims (id, practice, column_id, start_s, end_s, expire_s, owner)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (_new_id("c"), self._practice, column_id, start, end, expire, owner),
        )

    def _audit(self, tx: Tx, ctx: CallContext, action: str, subject: str, outcome: str = "ok") -> None:
        tx.execute(
            "INSERT INTO audit (id, at_s, partner, practice, action, subject, outcome) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (_new_id("e"), self._now(), ctx.partner_id, self._practice, action, subject, outcome),
        )

    def _own(self, tx: Tx, ctx: CallContext, table: str, record_id: str) -> Row:
        if table == "appointments":
            row = tx.one(f"{APPOINTMENT_SELECT} WHERE a.id = ? AND a.practice = ?", (record_id, self._practice))
        else:
            row = tx.one(f"SELECT * FROM {table} WHERE id = ? AND practice = ?", (record_id, self._practice))
        if row is None or row["partner"] != ctx.partner_id:
            # Another partner's record answers exactly like one that does not exist.
            raise NotFound.field("name", f"no such {table[:-1]}")
        return row

    def _insert_appointment(
        self, tx: Tx, ctx: CallContext, appointment_id: str, slot: SlotRequest, interval: Interval, mode: str,
        rescheduled_from: str | None = None,
    ) -> None:  # fmt: skip
        state = {AUTOMATIC: "writing", CONFIRMATION: "pending_practice", MANUAL: "pending_transfer"}[mode]
        now = self._now()
        tx.execute(
            "INSERT INTO appointments (id, practice, partner, column_id, type_id, start_s, end_s, patient, state,"
            " mode, create_s, rescheduled_from) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                appointment_id,
                self._practice,
                ctx.partner_id,
                slot.column_id,
                slot.appointment_type_id,
                from_datetime(interval.start),
                from_datetime(interval.end),
                self._cipher.seal(slot.patient_id, "appointments.patient"),
                state,
                mode,
                now,
                rescheduled_from,
            ),
        )
        if state in PENDING:
            note_inbox(tx, self._practice, appointment_id, now)

    def _claim_expiry(self, mode: str) -> int | None:
        """A claim for a booking waiting for the practice's confirmation lapses when it falls due."""
        return self._now() + int(self._policy.confirm_within.total_seconds()) if mode == CONFIRMATION else None

    # --- output -------------------------------------------------------------------------------

    def _appointment(self, ctx: CallContext, row: Row) -> Appointment:
        return Appointment(
            id=row["id"],
            column_id=row["column_id"],
            appointment_type_id=row["type_id"],
            interval=Interval(to_datetime(row["start_s"]), to_datetime(row["end_s"])),
            patient_id=self._outward(ctx, self._cipher.open(row["patient"], "appointments.patient")),
            state=AppointmentState(row["state"]),
            create_time=to_datetime(row["create_s"]),
            etag=str(row["version"]),
            extra=bool(row["extra"]),
            cancel_time=to_datetime(row["cancel_s"]) if row["cancel_s"] is not None else None,
            rescheduled_from=row["rescheduled_from"],
            rescheduled_to=row["rescheduled_to"],
            reject_reason=self._reason(row),
        )

    def _reason(self, row: Row) -> str | None:
        sealed = row.get("decision_reason")
        if row["state"] != "rejected" or sealed is None:
            return None
        return self._cipher.open(str(sealed), "decisions.reason")

    # --- announcing to the partner ----------------------------------------------------------

    def announce(self, row: Row) -> None:
        """Tell the appointment's partner (its change feed) what the practice or the gateway did."""
        if self._announce_to is not None:
            ctx = CallContext(partner_id=row["partner"])
            self._announce_to(AppointmentChanged(self._appointment(ctx, row)), row["partner"])

    async def expire_due(self) -> None:
        """Reject confirmations the practice did not decide within `confirm_within` (lazily, on reads):
        their claims already lapsed at that moment, this records it and tells the partner why."""
        now = self._now()
        if now < self._expiry_hint:
            return
        within = int(self._policy.confirm_within.total_seconds())

        def work(tx: Tx) -> list[str]:
            due = tx.all(
                "SELECT id FROM appointments WHERE practice = ? AND state = 'pending_practice' AND create_s <= ?"
                " AND rescheduled_to IS NULL ORDER BY create_s, id",
                (self._practice, now - within),
            )
            hours = self._policy.confirm_within.total_seconds() / 3600
            reason = self._cipher.seal(EXPIRED_REASON.format(hours=f"{hours:g}"), "decisions.reason")
            done = []
            for item in due:
                changed = tx.execute(
                    "UPDATE appointments SET state = 'rejected', version = version + 1"
                    " WHERE id = ? AND state = 'pending_practice'",
                    (item["id"],),
                )
                if changed != 1:
                    continue
                tx.execute("DELETE FROM claims WHERE owner = ?", (item["id"],))
                tx.execute(
                    "INSERT INTO decisions (appointment_id, practice, action, reason, actor, at_s)"
                    " VALUES (?, ?, 'expire', ?, 'gateway', ?) ON CONFLICT (appointment_id) DO NOTHING",
                    (item["id"], self._practice, reason, now),
                )
                self._audit(tx, CallContext("gateway"), "expire", item["id"])
                note_inbox(tx, self._practice, item["id"], now)
                done.append(item["id"])
            oldest = tx.one(
                "SELECT MIN(create_s) AS s FROM appointments WHERE practice = ? AND state = 'pending_practice'",
                (self._practice,),
            )
            first = oldest["s"] if oldest and oldest["s"] is not None else now
            self._expiry_hint = int(first) + within
            return done

        for appointment_id in await self._store.run(work):
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

    def _hold(self, ctx: CallContext, row: Row) -> Hold:
        return Hold(
            id=row["id"],
            column_id=row["column_id"],
            appointment_type_id=row["type_id"],
            interval=Interval(to_datetime(row["start_s"]), to_datetime(row["end_s"])),
            patient_id=self._outward(ctx, self._cipher.open(row["patient"], "holds.patient")),
            expire_time=to_datetime(row["expire_s"]),
        )

    async def _load(self, ctx: CallContext, appointment_id: str) -> Appointment:
        row = await self._store.run(lambda tx: self._own(tx, ctx, "appointments", appointment_id))
        return self._appointment(ctx, row)

    # --- writing to the PVS -------------------------------------------------------------------

    async def _write(self, ctx: CallContext, appointment_id: str) -> None:
        """Write a WRITING appointment to the PVS and record it BOOKED (idempotent; used by recovery)."""
        row = await self._store.run(lambda tx: tx.one("SELECT * FROM appointments WHERE id = ?", (appointment_id,)))
        if row is None or row["state"] != "writing":
            return
        writer = self._adapter.calendar_writer
        if writer is None:
            raise FailedPrecondition("this practice's PVS cannot be written to")
        entry = CalendarEntry(
            reference=appointment_id,
            column_id=row["column_id"],
            appointment_type_id=row["type_id"],
            interval=Interval(to_datetime(row["start_s"]), to_datetime(row["end_s"])),
            patient_id=self._cipher.open(row["patient"], "appointments.patient"),
            partner_id=row["partner"],
            category=self._policy.category,
        )
        written = await writer.write_appointment(ctx, entry)
        await self._store.run(
            lambda tx: tx.execute(
                "UPDATE appointments SET state = 'booked', pvs_id = ?, extra = ?, version = version + 1"
                " WHERE id = ? AND state = 'writing'",
                (written.pvs_id, int(written.extra), appointment_id),
            )
        )

    async def _row(self, appointment_id: str) -> Row | None:
        return await self._store.run(
            lambda tx: tx.one(
                "SELECT * FROM appointments WHERE id = ? AND practice = ?", (appointment_id, self._practice)
            )
        )

    def _own_unsettled(self, tx: Tx, ctx: CallContext, appointment_id: str) -> tuple[Row, bool]:
        """The partner's appointment, and whether it has PVS work left that a crash or an unreachable
        PVS interrupted: its own write, the move that created it, or the move away from it."""
        row = self._own(tx, ctx, "appointments", appointment_id)
        if row["state"] == "writing" or (row["rescheduled_to"] is not None and row["state"] != "rescheduled"):
            return row, True
        if row["rescheduled_from"] is None:
            return row, False
        old = tx.one("SELECT state FROM appointments WHERE id = ?", (row["rescheduled_from"],))
        return row, old is not None and old["state"] in _HOLDING

    async def _complete_move(self, ctx: CallContext, old_id: str, new_id: str) -> None:
        """Finish the move of `old_id` to `new_id`; idempotent, and safe to run concurrently.

        The move was decided when the new appointment was committed, so it is only ever completed.
        The old one keeps its claim and PVS entry until the new one has left WRITING, so at every
        moment at least one of them holds the patient's time; then the old PVS entry is deleted
        (a repeated delete is no error) and only after that is the old one recorded RESCHEDULED and
        its claim dropped. Raises the PVS's error when it cannot be reached; nothing is lost then.
        """
        await self._write(ctx, new_id)  # nothing to do unless the new one is still WRITING
        new, old = await self._row(new_id), await self._row(old_id)
        if new is None or old is None or new["state"] == "writing" or old["state"] not in _HOLDING:
            return
        if old["state"] == "writing":
            # Never recorded as written (a move begun by an older gateway): it may still be in the
            # PVS, and only the idempotent write tells its PVS id.
            await self._write(ctx, old_id)
            old = await self._row(old_id)
            if old is None or old["state"] not in _HOLDING:
                return
        writer = self._adapter.calendar_writer
        if old["pvs_id"] is not None and writer is not None:
            await writer.delete_appointment(ctx, old["pvs_id"])
        was_pending = old["state"] in PENDING

        def release(tx: Tx) -> None:
            changed = tx.execute(
                "UPDATE appointments SET state = 'rescheduled', rescheduled_to = ?, version = version + 1"
                f" WHERE id = ? AND state IN ({', '.join('?' for _ in _HOLDING)})",
                (new_id, old_id, *_HOLDING),
            )
            if changed:
                tx.execute("DELETE FROM claims WHERE owner = ?", (old_id,))
                if was_pending:
                    note_inbox(tx, self._practice, old_id, self._now())

        await self._store.run(release)

    async def _settle(self, ctx: CallContext, appointment_id: str, *, strict: bool = False) -> bool:
        """Bring one appointment to rest: its PVS write, the move into it, the move away from it.

        Used by the call itself, by a retry with the same request_id, by GetAppointment and by
        `recover()`, all of which may meet the same half-done work. Returns whether it is at rest;
        when the PVS cannot be reached the work stays recorded for later, and `strict` raises the
        error instead of logging it (for a change that must not go ahead meanwhile).
        """
        try:
            row = await self._row(appointment_id)
            if row is None:
                return True
            if row["rescheduled_from"] is not None:
                await self._complete_move(ctx, row["rescheduled_from"], appointment_id)
            else:
                await self._write(ctx, appointment_id)
            row = await self._row(appointment_id)
            if row is not None and row["rescheduled_to"] is not None and row["state"] != "rescheduled":
                await self._complete_move(ctx, appointment_id, row["rescheduled_to"])
        except OtvError as error:
            if strict:
                raise
            log.warning("PVS work for %s deferred: %s", appointment_id, error.code.value)
            return False
        return True

    async def recover(self, ctx: CallContext) -> int:
        """Complete what a crash interrupted: PVS writes (WRITING records) and moves whose old
        appointment still holds its time. Returns how many appointments were brought to rest."""

        def unfinished(tx: Tx) -> list[str]:
            moves = tx.all(
                "SELECT n.id FROM appointments n JOIN appointments o ON o.id = n.rescheduled_from"
                f" WHERE n.practice = ? AND o.state IN ({', '.join('?' for _ in _HOLDING)}) ORDER BY n.id",
                (self._practice, *_HOLDING),
            )
            writes = tx.all(
                "SELECT id FROM appointments WHERE practice = ? AND state = 'writing' ORDER BY id", (self._practice,)
            )
            return list(dict.fromkeys(r["id"] for r in [*moves, *writes]))

        settled = 0
        for appointment_id in await self._store.run(unfinished):
            if await self._settle(ctx, appointment_id):
                settled += 1
        return settled

    async def _finish(self, ctx: CallContext, appointment_id: str) -> Appointment:
        """After the record is committed, or on a retry: do the PVS work now if the PVS can be
        reached. What fails stays recorded (WRITING, or a move not yet complete) and is retried."""
        await self._settle(ctx, appointment_id)
        return await self._load(ctx, appointment_id)

    async def _own_settled(self, ctx: CallContext, appointment_id: str) -> Row:
        """The partner's appointment after its unfinished PVS work is done; raises if that cannot be
        done now, so a change never goes ahead on top of it."""
        await self.expire_due()
        row, unsettled = await self._store.run(lambda tx: self._own_unsettled(tx, ctx, appointment_id))
        if not unsettled:
            return row
        await self._settle(ctx, appointment_id, strict=True)
        return await self._store.run(lambda tx: self._own(tx, ctx, "appointments", appointment_id))

    # --- WriterPort ---------------------------------------------------------------------------

    async def hold_slot(self, ctx: CallContext, slot: SlotRequest) -> Hold:
        slot = await self._identified(ctx, slot)
        fingerprint = _fingerprint("hold", slot)  # with details: the fingerprint covers them
        known = await self._store.run(lambda tx: self._replay(tx, ctx, "hold", fingerprint))
        if known is None:
            _, interval = await self._bookable(ctx, slot)

            def work(tx: Tx) -> str:
                again = self._replay(tx, ctx, "hold", fingerprint)
                if again is not None:
                    return again
                hold_id = _new_id("h")
                start, end = from_datetime(interval.start), from_datetime(interval.end)
                expire = self._now() + int(self._policy.hold.total_seconds())
                self._claim(tx, slot.column_id, start, end, hold_id, expire)
                kept = self._keep_details(tx, ctx, slot)
                tx.execute(
                    "INSERT INTO holds (id, practice, partner, column_id, type_id, start_s, end_s, patient, expire_s,"
                    " state, create_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', ?)",
                    (hold_id, self._practice, ctx.partner_id, slot.column_id, slot.appointment_type_id, start, end,
                     self._cipher.seal(kept.patient_id, "holds.patient"), expire, self._now()),
                )  # fmt: skip
                self._remember(tx, ctx, "hold", fingerprint, hold_id)
                self._audit(tx, ctx, "hold", hold_id)
                return hold_id

            known = await self._store.run(work)
        row = await self._store.run(lambda tx: self._own(tx, ctx, "holds", known))
        return self._hold(ctx, row)

    async def confirm_hold(self, ctx: CallContext, hold_id: str) -> Appointment:
        fingerprint = _fingerprint("confirm", hold_id)

        def work(tx: Tx) -> str:
            # Handing the hold's claim over changes the column's claims: serialise it with every
            # other change to them (as `_claim` does), then look at the request and the hold as
            # they are under that lock.
            tx.lock(f"{self._practice}/{self._own(tx, ctx, 'holds', hold_id)['column_id']}")
            again = self._replay(tx, ctx, "confirm", fingerprint)
            if again is not None:
                return again
            hold = self._own(tx, ctx, "holds", hold_id)
            if hold["state"] != "active":
                raise FailedPrecondition(f"the hold is already {hold['state']}")
            if hold["expire_s"] <= self._now():
                raise FailedPrecondition(f"the hold expired at {to_datetime(hold['expire_s']).isoformat()}")
            appointment_id = _new_id("a")
            patient = self._cipher.open(hold["patient"], "holds.patient")
            type_mode = self._mode_for(hold["type_id"], patient)
            slot = SlotRequest(hold["type_id"], hold["column_id"], to_datetime(hold["start_s"]), patient)
            interval = Interval(to_datetime(hold["start_s"]), to_datetime(hold["end_s"]))
            self._insert_appointment(tx, ctx, appointment_id, slot, interval, type_mode)
            # The hold's claim becomes the appointment's: no gap in which the time is free.
            handed = tx.execute(
                "UPDATE claims SET owner = ?, expire_s = ? WHERE owner = ?",
                (appointment_id, self._claim_expiry(type_mode), hold_id),
            )
            if handed != 1:
                raise Aborted("the hold's time was released meanwhile; hold the slot again")
            tx.execute("UPDATE holds SET state = 'confirmed', appointment = ? WHERE id = ?", (appointment_id, hold_id))
            self._remember(tx, ctx, "confirm", fingerprint, appointment_id)
            self._audit(tx, ctx, "confirm", appointment_id)
            return appointment_id

        appointment_id = await self._store.run(work)
        return await self._finish(ctx, appointment_id)

    async def release_hold(self, ctx: CallContext, hold_id: str) -> None:
        def work(tx: Tx) -> None:
            hold = self._own(tx, ctx, "holds", hold_id)
            if hold["state"] == "released":
                return
            if hold["state"] != "active":
                raise FailedPrecondition(f"the hold is already {hold['state']}")
            tx.execute("UPDATE holds SET state = 'released' WHERE id = ?", (hold_id,))
            tx.execute("DELETE FROM claims WHERE owner = ?", (hold_id,))
            self._audit(tx, ctx, "release", hold_id)

        await self._store.run(work)

    async def book_appointment(self, ctx: CallContext, slot: SlotRequest) -> Appointment:
        slot = await self._identified(ctx, slot)
        fingerprint = _fingerprint("book", slot)  # with details: the fingerprint covers them
        known = await self._store.run(lambda tx: self._replay(tx, ctx, "book", fingerprint))
        if known is not None:
            return await self._finish(ctx, known)
        _, interval = await self._bookable(ctx, slot)
        mode = MANUAL if slot.patient_details is not None else self._mode_for(slot.appointment_type_id, slot.patient_id)

        def work(tx: Tx) -> str:
            again = self._replay(tx, ctx, "book", fingerprint)
            if again is not None:
                return again
            appointment_id = _new_id("a")
            start, end = from_datetime(interval.start), from_datetime(interval.end)
            self._claim(tx, slot.column_id, start, end, appointment_id, self._claim_expiry(mode))
            self._insert_appointment(tx, ctx, appointment_id, self._keep_details(tx, ctx, slot), interval, mode)
            self._remember(tx, ctx, "book", fingerprint, appointment_id)
            self._audit(tx, ctx, "book", appointment_id)
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
        fingerprint = _fingerprint("cancel", appointment_id, etag)
        replayed = await self._store.run(lambda tx: self._replay(tx, ctx, "cancel", fingerprint))
        if replayed is not None:
            return await self._load(ctx, appointment_id)
        row = await self._own_settled(ctx, appointment_id)  # a pending write or move goes first
        self._check_change(row, etag)
        writer = self._adapter.calendar_writer
        if row["pvs_id"] is not None and writer is not None:
            await writer.delete_appointment(ctx, row["pvs_id"])  # idempotent: a retry after a crash is safe

        def work(tx: Tx) -> None:
            again = self._replay(tx, ctx, "cancel", fingerprint)
            if again is not None:
                return
            current = self._own(tx, ctx, "appointments", appointment_id)
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
            self._remember(tx, ctx, "cancel", fingerprint, appointment_id)
            self._audit(tx, ctx, "cancel", appointment_id)

        await self._store.run(work)
        return await self._load(ctx, appointment_id)

    async def reschedule_appointment(
        self, ctx: CallContext, appointment_id: str, etag: str, start: datetime, column_id: str | None
    ) -> Appointment:
        fingerprint = _fingerprint("reschedule", appointment_id, etag, start.isoformat(), column_id)
        known = await self._store.run(lambda tx: self._replay(tx, ctx, "reschedule", fingerprint))
        if known is not None:
            return await self._finish(ctx, known)  # completes the move if a crash interrupted it
        old = await self._own_settled(ctx, appointment_id)
        self._check_change(old, etag)
        patient = self._cipher.open(old["patient"], "appointments.patient")
        slot = SlotRequest(old["type_id"], column_id or old["column_id"], start, patient)
        _, interval = await self._bookable(ctx, slot, replacing=old)
        mode = self._mode_for(slot.appointment_type_id, patient)

        def secure(tx: Tx) -> str:
            again = self._replay(tx, ctx, "reschedule", fingerprint)
            if again is not None:
                return again
            current = self._own(tx, ctx, "appointments", appointment_id)
            self._check_change(current, etag)
            new_id = _new_id("a")
            lo, hi = from_datetime(interval.start), from_datetime(interval.end)
            self._claim(tx, slot.column_id, lo, hi, new_id, self._claim_expiry(mode), besides=appointment_id)
            self._insert_appointment(tx, ctx, new_id, slot, interval, mode, rescheduled_from=appointment_id)
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
            self._remember(tx, ctx, "reschedule", fingerprint, new_id)
            self._audit(tx, ctx, "reschedule", new_id)
            return new_id

        new_id = await self._store.run(secure)
        # The new time is written first, then the old one is released (see _complete_move).
        return await self._finish(ctx, new_id)

    async def get_appointment(self, ctx: CallContext, appointment_id: str) -> Appointment:
        await self.expire_due()
        row, unsettled = await self._store.run(lambda tx: self._own_unsettled(tx, ctx, appointment_id))
        if unsettled:
            return await self._finish(ctx, appointment_id)
        return self._appointment(ctx, row)

    async def list_appointments(self, ctx: CallContext, query: AppointmentQuery) -> Page[Appointment]:
        await self.expire_due()
        after_start, after_id = _page_position(query.page.page_token)
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


def _page_position(token: str) -> tuple[int, str]:
    """`start:id` of the last item served; anything else, or a start no appointment can have, is refused
    (a number past 64 bits would overflow the store's integers)."""
    if not token:
        return -(2**62), ""
    start, _, last_id = token.partition(":")
    digits = start.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        raise InvalidArgument.field("page_token", "is not a token this server issued")
    return int(start), last_id
