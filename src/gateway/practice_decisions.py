"""The practice's decisions on the bookings waiting for it: accept, reject, mark transferred.

What the practice does with bookings that wait for it (booking.py): confirm or reject one in
practice-confirmation mode (PENDING_PRACTICE), mark a manual one transferred once staff entered it
into the PVS (PENDING_TRANSFER), or reject either with a reason. `actor` says who decided
("pvs:<key id>", "staff:<user>") and goes into the audit with the decision.

Effects reach the partner: accepting writes the booking into the PVS (an extra appointment when
its slot was taken there meanwhile) and records it BOOKED; rejecting releases its time; each
decision is announced on the partner's change feed, and a rejection's reason is part of the
appointment the partner reads. A confirmation left undecided for `confirm_within` is rejected by
the gateway (`BookingDesk.expire_due`): its claim lapses at that moment by itself, the record
follows on the next read of either side.

Decisions are idempotent per `request_id` (per actor), and checked in this order: the booking
exists in this practice (NOT_FOUND naming `name`), it is still waiting for this decision
(FAILED_PRECONDITION), the etag is current (ABORTED).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable

from gateway.booking import PENDING, BookingDesk, note_inbox
from gateway.practice_history import record_audit
from gateway.practice_inbox import InboxItem, inbox_item, waiting
from gateway.practice_scope import PracticeScope
from gateway.state_store import Row, Tx
from otv_sdk.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound, OtvError

__all__ = ["MAX_PVS_ID", "MAX_REASON", "PracticeDecisions"]

log = logging.getLogger("otv.gateway.practice")

MAX_REASON = 500
MAX_PVS_ID = 200


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()


class PracticeDecisions:
    """The deciding part of a practice's desk."""

    def __init__(self, scope: PracticeScope) -> None:
        self._scope = scope

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
            await desk.write_accepted(self._scope.ctx, appointment_id)
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
            if not waiting(row):
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
            (row["id"], self._scope.practice_id, action, reason, actor, now),
        )
        record_audit(tx, self._scope.practice_id, row["partner"], action, row["id"], f"ok by {actor}", now)
        note_inbox(tx, self._scope.practice_id, row["id"], now)

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
        desk = await self._scope.booking_desk()
        await desk.expire_due()
        requester = f"{actor}@{self._scope.practice_id}"
        fingerprint = _fingerprint(method, appointment_id, etag, *extra)

        def work(tx: Tx) -> None:
            tx.lock(f"inbox:{self._scope.practice_id}")
            seen = tx.one(
                "SELECT method, fingerprint FROM requests WHERE partner = ? AND request_id = ?",
                (requester, request_id),
            )
            if seen is not None:
                if seen["method"] != f"practice.{method}" or seen["fingerprint"] != fingerprint:
                    raise InvalidArgument.field("request_id", "was already used for a different request")
                return
            row = tx.one(
                "SELECT * FROM appointments WHERE id = ? AND practice = ?", (appointment_id, self._scope.practice_id)
            )
            if row is None:
                raise NotFound.field("name", "no such booking at this practice")
            now = self._scope.now()
            change(tx, row, now, desk)
            tx.execute(
                "INSERT INTO requests (partner, request_id, method, fingerprint, result, create_s)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (requester, request_id, f"practice.{method}", fingerprint, appointment_id, now),
            )

        await self._scope.store.run(work)
        return desk

    async def _after_decision(self, desk: BookingDesk, appointment_id: str) -> InboxItem:
        row = await desk.decided_row(appointment_id)
        assert row is not None
        desk.announce(row)
        self._scope.wake()
        calendar = await self._scope.calendar(desk)
        return await self._scope.store.run(lambda tx: inbox_item(tx, desk, self._scope.practice_id, row, calendar))
