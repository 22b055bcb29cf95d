"""Completing what the booking desk decided, crash-safely: PVS writes, moves, and lapsed confirmations.

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

A confirmation the practice leaves undecided past `confirm_within` lost its claim at that moment
already; `expire_due` only records the rejection, lazily, on the next read.
"""

from __future__ import annotations

import logging

from gateway.booking_records import EXPIRED_REASON, HOLDING, PENDING, BookingPolicy, BookingRecords, note_inbox
from gateway.encryption import FieldCipher
from gateway.state_store import Row, StateStore, Tx
from otv_sdk.errors import FailedPrecondition, OtvError
from otv_sdk.models import Interval
from otv_sdk.ports import Adapter, CalendarEntry, CallContext
from otv_sdk.timeline import to_datetime

__all__ = ["BookingCompletion"]

# The desk's logger: deferred PVS work is reported under the booking desk's name.
log = logging.getLogger("otv.gateway.booking")


class BookingCompletion:
    """The PVS work and lapses of one practice's bookings, each step idempotent and safe to repeat."""

    def __init__(
        self,
        practice_id: str,
        adapter: Adapter,
        store: StateStore,
        records: BookingRecords,
        policy: BookingPolicy,
        cipher: FieldCipher,
    ) -> None:
        self._practice = practice_id
        self._adapter = adapter
        self._store = store
        self._records = records
        self._policy = policy
        self._cipher = cipher
        self._expiry_hint = 0  # no confirmation can fall due before this time (see expire_due)

    async def write(self, ctx: CallContext, appointment_id: str) -> None:
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

    def own_unsettled(self, tx: Tx, ctx: CallContext, appointment_id: str) -> tuple[Row, bool]:
        """The partner's appointment, and whether it has PVS work left that a crash or an unreachable
        PVS interrupted: its own write, the move that created it, or the move away from it."""
        row = self._records.own(tx, ctx, "appointments", appointment_id)
        if row["state"] == "writing" or (row["rescheduled_to"] is not None and row["state"] != "rescheduled"):
            return row, True
        if row["rescheduled_from"] is None:
            return row, False
        old = tx.one("SELECT state FROM appointments WHERE id = ?", (row["rescheduled_from"],))
        return row, old is not None and old["state"] in HOLDING

    async def _complete_move(self, ctx: CallContext, old_id: str, new_id: str) -> None:
        """Finish the move of `old_id` to `new_id`; idempotent, and safe to run concurrently.

        The move was decided when the new appointment was committed, so it is only ever completed.
        The old one keeps its claim and PVS entry until the new one has left WRITING, so at every
        moment at least one of them holds the patient's time; then the old PVS entry is deleted
        (a repeated delete is no error) and only after that is the old one recorded RESCHEDULED and
        its claim dropped. Raises the PVS's error when it cannot be reached; nothing is lost then.
        """
        await self.write(ctx, new_id)  # nothing to do unless the new one is still WRITING
        new, old = await self._row(new_id), await self._row(old_id)
        if new is None or old is None or new["state"] == "writing" or old["state"] not in HOLDING:
            return
        if old["state"] == "writing":
            # Never recorded as written (a move begun by an older gateway): it may still be in the
            # PVS, and only the idempotent write tells its PVS id.
            await self.write(ctx, old_id)
            old = await self._row(old_id)
            if old is None or old["state"] not in HOLDING:
                return
        writer = self._adapter.calendar_writer
        if old["pvs_id"] is not None and writer is not None:
            await writer.delete_appointment(ctx, old["pvs_id"])
        was_pending = old["state"] in PENDING

        def release(tx: Tx) -> None:
            changed = tx.execute(
                "UPDATE appointments SET state = 'rescheduled', rescheduled_to = ?, version = version + 1"
                f" WHERE id = ? AND state IN ({', '.join('?' for _ in HOLDING)})",
                (new_id, old_id, *HOLDING),
            )
            if changed:
                tx.execute("DELETE FROM claims WHERE owner = ?", (old_id,))
                if was_pending:
                    note_inbox(tx, self._practice, old_id, self._records.now())

        await self._store.run(release)

    async def settle(self, ctx: CallContext, appointment_id: str, *, strict: bool = False) -> bool:
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
                await self.write(ctx, appointment_id)
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
                f" WHERE n.practice = ? AND o.state IN ({', '.join('?' for _ in HOLDING)}) ORDER BY n.id",
                (self._practice, *HOLDING),
            )
            writes = tx.all(
                "SELECT id FROM appointments WHERE practice = ? AND state = 'writing' ORDER BY id", (self._practice,)
            )
            return list(dict.fromkeys(r["id"] for r in [*moves, *writes]))

        settled = 0
        for appointment_id in await self._store.run(unfinished):
            if await self.settle(ctx, appointment_id):
                settled += 1
        return settled

    async def expire_due(self) -> list[str]:
        """Reject confirmations the practice did not decide within `confirm_within`; returns their ids,
        whose partners the desk then tells. Their claims already lapsed when they fell due."""
        now = self._records.now()
        if now < self._expiry_hint:
            return []
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
                self._records.audit(tx, CallContext("gateway"), "expire", item["id"])
                note_inbox(tx, self._practice, item["id"], now)
                done.append(item["id"])
            oldest = tx.one(
                "SELECT MIN(create_s) AS s FROM appointments WHERE practice = ? AND state = 'pending_practice'",
                (self._practice,),
            )
            first = oldest["s"] if oldest and oldest["s"] is not None else now
            self._expiry_hint = int(first) + within
            return done

        return await self._store.run(work)
