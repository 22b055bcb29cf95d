"""The booking records: what the booking desk keeps in the state store, and how it reads and writes it.

Holds, appointments, claims, idempotency records (`requests`), the audit trail and the numbered
inbox events are rows of the shared state store, written only inside the transaction that makes a
decision, so that a decision and everything it implies commit or vanish together. An appointment's
state follows from its booking mode: automatic ones are WRITING until the PVS has them, the others
wait (`PENDING`) for the practice; `HOLDING` are the states whose claim still holds calendar time.
A patient sent as details is kept under an id made up for it (`DETAILS_PREFIX`), never a PVS id.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from gateway.encryption import FieldCipher
from gateway.state_store import Row, Tx
from otv_sdk.errors import Aborted, InvalidArgument, NotFound
from otv_sdk.models import Appointment, AppointmentState, Hold, Interval
from otv_sdk.ports import CallContext, SlotRequest
from otv_sdk.timeline import from_datetime, to_datetime

__all__ = [
    "APPOINTMENT_SELECT",
    "AUTOMATIC",
    "CONFIRMATION",
    "DETAILS_PREFIX",
    "EXPIRED_REASON",
    "HOLDING",
    "MANUAL",
    "PENDING",
    "BookingPolicy",
    "BookingRecords",
    "PatientIds",
    "fresh_id",
    "note_inbox",
    "page_position",
    "request_fingerprint",
    "with_details",
]

AUTOMATIC, CONFIRMATION, MANUAL = "automatic", "confirmation", "manual"
# Open claims: the appointment states whose time the gateway still holds.
HOLDING = ("writing", "pending_practice", "pending_transfer", "booked")
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


def request_fingerprint(method: str, *parts: object) -> str:
    return hashlib.sha256(json.dumps([method, *[str(p) for p in parts]]).encode()).hexdigest()


def fresh_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(8)}"


def page_position(token: str) -> tuple[int, str]:
    """`start:id` of the last item served; anything else, or a start no appointment can have, is refused
    (a number past 64 bits would overflow the store's integers)."""
    if not token:
        return -(2**62), ""
    start, _, last_id = token.partition(":")
    digits = start.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        raise InvalidArgument.field("page_token", "is not a token this server issued")
    return int(start), last_id


class BookingRecords:
    """One practice's booking records, inside the transaction the caller runs, and as partners see them.

    Every method taking a `tx` only reads or writes in it: the caller decides what commits together.
    """

    def __init__(
        self,
        practice_id: str,
        patients: PatientIds,
        policy: BookingPolicy,
        cipher: FieldCipher,
        clock: Callable[[], float],
    ) -> None:
        self._practice = practice_id
        self._patients = patients
        self._policy = policy
        self._cipher = cipher
        self._clock = clock

    def now(self) -> int:
        return int(self._clock())

    def replay(self, tx: Tx, ctx: CallContext, method: str, fingerprint: str) -> str | None:
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

    def remember(self, tx: Tx, ctx: CallContext, method: str, fingerprint: str, result: str) -> None:
        if ctx.request_id is not None:
            tx.execute(
                "INSERT INTO requests (partner, request_id, method, fingerprint, result, create_s)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (ctx.partner_id, ctx.request_id, method, fingerprint, result, self.now()),
            )

    def claim(
        self, tx: Tx, column_id: str, start: int, end: int, owner: str, expire: int | None, besides: str | None = None
    ) -> None:
        tx.lock(f"{self._practice}/{column_id}")
        now = self.now()
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
            (fresh_id("c"), self._practice, column_id, start, end, expire, owner),
        )

    def audit(self, tx: Tx, ctx: CallContext, action: str, subject: str, outcome: str = "ok") -> None:
        tx.execute(
            "INSERT INTO audit (id, at_s, partner, practice, action, subject, outcome) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (fresh_id("e"), self.now(), ctx.partner_id, self._practice, action, subject, outcome),
        )

    def own(self, tx: Tx, ctx: CallContext, table: str, record_id: str) -> Row:
        if table == "appointments":
            row = tx.one(f"{APPOINTMENT_SELECT} WHERE a.id = ? AND a.practice = ?", (record_id, self._practice))
        else:
            row = tx.one(f"SELECT * FROM {table} WHERE id = ? AND practice = ?", (record_id, self._practice))
        if row is None or row["partner"] != ctx.partner_id:
            # Another partner's record answers exactly like one that does not exist.
            raise NotFound.field("name", f"no such {table[:-1]}")
        return row

    def insert_appointment(
        self, tx: Tx, ctx: CallContext, appointment_id: str, slot: SlotRequest, interval: Interval, mode: str,
        rescheduled_from: str | None = None,
    ) -> None:  # fmt: skip
        state = {AUTOMATIC: "writing", CONFIRMATION: "pending_practice", MANUAL: "pending_transfer"}[mode]
        now = self.now()
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

    def claim_expiry(self, mode: str) -> int | None:
        """A claim for a booking waiting for the practice's confirmation lapses when it falls due."""
        return self.now() + int(self._policy.confirm_within.total_seconds()) if mode == CONFIRMATION else None

    # --- as partners see them -------------------------------------------------------------------

    def outward(self, ctx: CallContext, patient_id: str) -> str:
        """The patient as the partner sees it; empty for one sent as details."""
        return "" if with_details(patient_id) else self._patients.outward(ctx, patient_id)

    def appointment(self, ctx: CallContext, row: Row) -> Appointment:
        return Appointment(
            id=row["id"],
            column_id=row["column_id"],
            appointment_type_id=row["type_id"],
            interval=Interval(to_datetime(row["start_s"]), to_datetime(row["end_s"])),
            patient_id=self.outward(ctx, self._cipher.open(row["patient"], "appointments.patient")),
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

    def hold(self, ctx: CallContext, row: Row) -> Hold:
        return Hold(
            id=row["id"],
            column_id=row["column_id"],
            appointment_type_id=row["type_id"],
            interval=Interval(to_datetime(row["start_s"]), to_datetime(row["end_s"])),
            patient_id=self.outward(ctx, self._cipher.open(row["patient"], "holds.patient")),
            expire_time=to_datetime(row["expire_s"]),
        )
