"""What happened at the practice: its audit, and the bookings most recently changed.

The practice's audit holds the partners' calls on it and the practice's own actions (decisions,
licence changes); the desk writes the latter in the transaction of the action, with the actor
("pvs:<key id>", "staff:<user>") in the outcome. It is read newest first, a page at a time.

The recent bookings are what the staff page shows besides the inbox: the latest online bookings,
decisions and cancellations, whichever happened last.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from gateway.practice_scope import PracticeScope
from gateway.state_store import Row, Tx
from otv_sdk.errors import InvalidArgument
from otv_sdk.timeline import from_datetime, to_datetime

__all__ = ["AuditEntry", "PracticeHistory", "RecentBooking", "record_audit"]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    partner_id: str
    action: str
    subject: str
    outcome: str


@dataclass(frozen=True, slots=True)
class RecentBooking:
    appointment_id: str
    partner_id: str
    appointment_type_name: str
    column_name: str
    start: datetime
    state: str
    changed: datetime


def record_audit(tx: Tx, practice_id: str, partner: str, action: str, subject: str, outcome: str, now: int) -> None:
    """One entry of the practice's audit, in the transaction of what it records."""
    tx.execute(
        "INSERT INTO audit (id, at_s, partner, practice, action, subject, outcome) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (f"e{secrets.token_hex(8)}", now, partner, practice_id, action, subject, outcome),
    )


def _audit_position(token: str) -> tuple[int, str] | None:
    """`at_s:id` of the last entry served, or None for the first page."""
    if not token:
        return None
    at, sep, last_id = token.partition(":")
    if not sep or not (at.isascii() and at.isdigit()) or len(at) > 18 or not last_id or len(last_id) > 64:
        raise InvalidArgument.field("page_token", "is not a token this server issued")
    return int(at), last_id


class PracticeHistory:
    """The part of a practice's desk that reads what happened."""

    def __init__(self, scope: PracticeScope) -> None:
        self._scope = scope

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
        params: list[object] = [self._scope.practice_id]
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
        rows = await self._scope.store.run(lambda tx: tx.all(sql, params))
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
        desk = await self._scope.booking_desk()
        await desk.expire_due()
        calendar = await self._scope.calendar(desk)

        def read(tx: Tx) -> list[Row]:
            base = (
                "SELECT a.id, a.partner, a.type_id, a.column_id, a.start_s, a.state, a.create_s, a.cancel_s,"
                " d.at_s AS decided_s FROM appointments a LEFT JOIN decisions d ON d.appointment_id = a.id"
                " WHERE a.practice = ?"
            )
            found: dict[str, Row] = {}
            for order in ("a.create_s", "a.cancel_s", "d.at_s"):
                for row in tx.all(
                    f"{base} AND {order} IS NOT NULL ORDER BY {order} DESC LIMIT ?", (self._scope.practice_id, limit)
                ):
                    found[row["id"]] = row
            return list(found.values())

        rows = await self._scope.store.run(read)
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
