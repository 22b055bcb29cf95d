"""Reconciliation: a manual booking that staff entered into an upload-only PVS is transferred by itself.

A practice whose PVS can only upload (DURIA, seed 002) receives online bookings in manual mode:
the booking waits in the practice inbox (PENDING_TRANSFER, its time claimed by the gateway) until
staff enter it into the PVS by hand, with the booking's length. The next upload then shows that
appointment as new busy time in the booked column. The snapshot keeper hands every column's new
busy time (what the diff against the previous upload calls added) to `transfer_entered`, inside
the upload's transaction, and a pending booking the new busy time *is* becomes BOOKED exactly as
if staff had marked it transferred (practice_desk.PracticeDesk.mark_transferred): decision
"transfer" by actor "upload", an audit entry, an inbox event (the inbox drops it) and the
partner's AppointmentChanged in the change feed, all committed with the upload or not at all.

A new busy interval is the booking when
- it covers the booking's whole interval (one that only partly covers it is something else),
- it overlaps no other pending booking of the column (one interval over two bookings could be
  either: ambiguous), and
- it is at most `SLACK` longer than the booking (staff enter it "with the right length", maybe
  into a somewhat longer PVS slot; a longer block is a reservation or an absence over the booking).
Anything else leaves the booking for staff, its time still claimed; a later upload whose new busy
time matches transfers it then. Busy time that was already in the previous upload never matches:
it cannot be the entry of a booking made since.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from gateway.booking import APPOINTMENT_SELECT, note_inbox
from gateway.state_store import Row, Tx
from otv_sdk.changes import Change
from otv_sdk.timeline import IntervalArray

__all__ = ["ACTOR", "SLACK", "Transferred", "entered_bookings", "transfer_entered"]

ACTOR = "upload"
SLACK = 3600  # seconds a matching busy interval may be longer than the booking

# Builds the partner's AppointmentChanged from an appointment row (the booking desk knows how).
Describe = Callable[[Row], Change]


@dataclass(frozen=True, slots=True)
class Transferred:
    appointment_id: str
    partner_id: str
    change: Change | None


def entered_bookings(pending: Sequence[Row], added: IntervalArray) -> list[Row]:
    """The pending bookings (of one column) that some newly added busy interval is, by the rules above."""
    if not pending or len(added) == 0:
        return []
    starts, ends = added.starts, added.ends
    lengths = ends - starts
    overlaps = np.zeros(len(added), dtype=np.int64)
    for row in pending:
        overlaps += (starts < row["end_s"]) & (ends > row["start_s"])
    found = []
    for row in pending:
        lo, hi = int(row["start_s"]), int(row["end_s"])
        matches = (starts <= lo) & (ends >= hi) & (lengths <= hi - lo + SLACK) & (overlaps == 1)
        if bool(matches.any()):
            found.append(row)
    return found


def transfer_entered(
    tx: Tx, practice_id: str, column_id: str, added: IntervalArray, now: int, describe: Describe | None
) -> list[Transferred]:
    """Inside the upload's transaction: transfer the column's pending manual bookings that the new
    busy time shows entered. Returns them, each with the change to announce to its partner."""
    if len(added) == 0:
        return []
    tx.lock(f"inbox:{practice_id}")  # as the practice's decisions do: one decision per booking
    pending = tx.all(
        "SELECT id, partner, start_s, end_s FROM appointments WHERE practice = ? AND column_id = ?"
        " AND state = 'pending_transfer' AND rescheduled_to IS NULL ORDER BY start_s, id",
        (practice_id, column_id),
    )
    done = []
    for row in entered_bookings(pending, added):
        changed = tx.execute(
            "UPDATE appointments SET state = 'booked', version = version + 1"
            " WHERE id = ? AND state = 'pending_transfer' AND rescheduled_to IS NULL",
            (row["id"],),
        )
        if changed != 1:
            continue
        tx.execute(
            "INSERT INTO decisions (appointment_id, practice, action, reason, actor, at_s)"
            " VALUES (?, ?, 'transfer', NULL, ?, ?) ON CONFLICT (appointment_id) DO NOTHING",
            (row["id"], practice_id, ACTOR, now),
        )
        tx.execute(
            "INSERT INTO audit (id, at_s, partner, practice, action, subject, outcome) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (f"e{secrets.token_hex(8)}", now, row["partner"], practice_id, "transfer", row["id"], f"ok by {ACTOR}"),
        )
        note_inbox(tx, practice_id, row["id"], now)
        change = None
        if describe is not None:
            current = tx.one(f"{APPOINTMENT_SELECT} WHERE a.id = ?", (row["id"],))
            assert current is not None
            change = describe(current)
        done.append(Transferred(row["id"], row["partner"], change))
    return done
