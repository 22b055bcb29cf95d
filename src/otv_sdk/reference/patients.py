"""The reference PVS's patient and consent data, and the practice's own side of them.

Data access only: the gateway decides who a booking is for (otv_rules.matching) and asks for the
patients born on a date, a new record, or a note line. Creations and notes are idempotent on the
gateway's request id, so a retried call changes nothing.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from dataclasses import dataclass
from datetime import date

from otv_sdk.errors import NotFound
from otv_sdk.models import (
    Consent,
    ConsentActor,
    ConsentEvidence,
    ConsentMethod,
    ConsentState,
    Contact,
    ContactKind,
    NewPatient,
    PatientRecord,
)
from otv_sdk.ports import CallContext, ConsentDataPort, PatientDataPort
from otv_sdk.reference.database import Database
from otv_sdk.timeline import to_datetime

__all__ = ["ReferencePatients", "ReferencePractice", "write_consent"]


def _birth(text: str | None) -> date | None:
    """Only a full date can be matched; 'YYYY-MM' or nothing means unknown."""
    if text is None or len(text) != 10:
        return None
    return date.fromisoformat(text)


def _contacts(conn: sqlite3.Connection, patient_id: str) -> tuple[Contact, ...]:
    rows = conn.execute("SELECT kind, value FROM patient_contacts WHERE patient_id = ? ORDER BY rowid", (patient_id,))
    return tuple(Contact(ContactKind(r["kind"]), r["value"]) for r in rows)


def _consent_state(conn: sqlite3.Connection, patient_id: str, partner_id: str) -> ConsentState:
    row = conn.execute(
        "SELECT state FROM consents WHERE patient_id = ? AND partner_id = ?", (patient_id, partner_id)
    ).fetchone()
    return ConsentState.OPEN if row is None else ConsentState(row["state"])


def _open_consent(conn: sqlite3.Connection, patient_id: str, partner_id: str, now: int) -> None:
    """The partner's consent record exists (open) from the patient's first booking through it."""
    conn.execute(
        "INSERT OR IGNORE INTO consents (patient_id, partner_id, state, update_time) VALUES (?, ?, 'open', ?)",
        (patient_id, partner_id, now),
    )


def _record(conn: sqlite3.Connection, row: sqlite3.Row, partner_id: str) -> PatientRecord:
    return PatientRecord(
        id=row["id"],
        given_name=row["given_name"],
        family_name=row["family_name"],
        birth_date=_birth(row["birth_date"]),
        contacts=_contacts(conn, row["id"]),
        active=bool(row["active"]),
        consent=_consent_state(conn, row["id"], partner_id),
        created_online_by=row["created_online_by"],
        create_time=to_datetime(row["create_time"]) if row["create_time"] else None,
    )


def _record_of(conn: sqlite3.Connection, patient_id: str, partner_id: str) -> PatientRecord:
    return _record(conn, conn.execute("SELECT * FROM patients WHERE id = ?", (patient_id,)).fetchone(), partner_id)


class ReferencePatients(PatientDataPort, ConsentDataPort):
    def __init__(self, database: Database) -> None:
        self._db = database
        self.database = database
        self.practice = ReferencePractice(database)

    async def list_patients_born_on(self, ctx: CallContext, birth_date: date) -> list[PatientRecord]:
        def read(conn: sqlite3.Connection) -> list[PatientRecord]:
            rows = conn.execute("SELECT * FROM patients WHERE birth_date = ? ORDER BY id", (birth_date.isoformat(),))
            return [_record(conn, r, ctx.partner_id) for r in rows.fetchall()]

        return await self._db.run(read)

    async def create_patient(self, ctx: CallContext, patient: NewPatient, request_id: str) -> PatientRecord:
        def work(conn: sqlite3.Connection) -> PatientRecord:
            seen = conn.execute(
                "SELECT patient_id FROM patient_requests WHERE request_id = ?", (request_id,)
            ).fetchone()
            if seen is not None:
                return _record_of(conn, seen["patient_id"], ctx.partner_id)
            now = int(time.time())
            patient_id = f"n-{secrets.token_hex(6)}"
            conn.execute(
                "INSERT INTO patients (id, given_name, family_name, birth_date, note, created_online_by, create_time)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    patient_id,
                    patient.given_name,
                    patient.family_name,
                    patient.birth_date.isoformat(),
                    patient.note,
                    ctx.partner_id,
                    now,
                ),
            )
            conn.executemany(
                "INSERT INTO patient_contacts VALUES (?, ?, ?)",
                [(patient_id, c.kind.value, c.value) for c in patient.contacts],
            )
            _open_consent(conn, patient_id, ctx.partner_id, now)
            conn.execute("INSERT INTO patient_requests VALUES (?, ?)", (request_id, patient_id))
            return _record_of(conn, patient_id, ctx.partner_id)

        return await self._db.run(work)

    async def append_patient_note(self, ctx: CallContext, patient_id: str, line: str, request_id: str) -> None:
        def work(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM patients WHERE id = ?", (patient_id,)).fetchone() is None:
                raise NotFound.field("name", "no such patient")
            if conn.execute("SELECT 1 FROM patient_requests WHERE request_id = ?", (request_id,)).fetchone():
                return
            conn.execute(
                "UPDATE patients SET note = CASE WHEN note = '' THEN ? ELSE note || char(10) || ? END WHERE id = ?",
                (line, line, patient_id),
            )
            _open_consent(conn, patient_id, ctx.partner_id, int(time.time()))
            conn.execute("INSERT INTO patient_requests VALUES (?, ?)", (request_id, patient_id))

        await self._db.run(work)

    async def list_consented_patients(self, ctx: CallContext, after: str, limit: int) -> list[PatientRecord]:
        def read(conn: sqlite3.Connection) -> list[PatientRecord]:
            rows = conn.execute(
                "SELECT p.* FROM consents c JOIN patients p ON p.id = c.patient_id"
                " WHERE c.partner_id = ? AND c.state = 'granted' AND p.active = 1 AND p.id > ?"
                " ORDER BY p.id LIMIT ?",
                (ctx.partner_id, after, limit),
            ).fetchall()
            return [_record(conn, r, ctx.partner_id) for r in rows]

        return await self._db.run(read)

    async def read_consent(self, ctx: CallContext, patient_id: str) -> Consent:
        return await self._db.run(lambda conn: _read_consent(conn, patient_id, ctx.partner_id))

    async def write_consent(
        self,
        ctx: CallContext,
        patient_id: str,
        state: ConsentState,
        evidence: ConsentEvidence | None,
        actor: ConsentActor,
    ) -> Consent:
        def work(conn: sqlite3.Connection) -> Consent:
            _read_consent(conn, patient_id, ctx.partner_id)  # NotFound for an unknown or inactive patient
            write_consent(conn, patient_id, ctx.partner_id, state, evidence, actor)
            return _read_consent(conn, patient_id, ctx.partner_id)

        return await self._db.run(work)


def _read_consent(conn: sqlite3.Connection, patient_id: str, partner_id: str) -> Consent:
    patient = conn.execute("SELECT active FROM patients WHERE id = ?", (patient_id,)).fetchone()
    if patient is None or not patient["active"]:
        raise NotFound.field("name", "no such patient")
    row = conn.execute(
        "SELECT * FROM consents WHERE patient_id = ? AND partner_id = ?", (patient_id, partner_id)
    ).fetchone()
    if row is None:
        return Consent(patient_id=patient_id, state=ConsentState.OPEN)
    evidence = None
    if row["decide_time"] is not None and row["method"] is not None:
        evidence = ConsentEvidence(
            to_datetime(row["decide_time"]), ConsentMethod(row["method"]), row["text_version"] or ""
        )
    return Consent(
        patient_id=patient_id,
        state=ConsentState(row["state"]),
        evidence=evidence,
        set_by=ConsentActor(row["set_by"]) if row["set_by"] else None,
        update_time=to_datetime(row["update_time"]) if row["update_time"] else None,
    )


def write_consent(
    conn: sqlite3.Connection,
    patient_id: str,
    partner_id: str,
    state: ConsentState,
    evidence: ConsentEvidence | None,
    actor: ConsentActor,
) -> None:
    now = int(time.time())
    conn.execute(
        "INSERT INTO consents (patient_id, partner_id, state, decide_time, method, text_version, set_by, update_time)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (patient_id, partner_id) DO UPDATE SET state = excluded.state,"
        " decide_time = excluded.decide_time, method = excluded.method, text_version = excluded.text_version,"
        " set_by = excluded.set_by, update_time = excluded.update_time",
        (
            patient_id,
            partner_id,
            state.value,
            int(evidence.decide_time.timestamp()) if evidence else None,
            evidence.method.value if evidence else None,
            evidence.text_version if evidence else None,
            actor.value,
            now,
        ),
    )
    conn.execute(
        "INSERT INTO consent_events (patient_id, partner_id, state, set_by, at) VALUES (?, ?, ?, ?, ?)",
        (patient_id, partner_id, state.value, actor.value, now),
    )


@dataclass(frozen=True, slots=True)
class StoredPatient:
    """A patient record as the practice sees it (for tests and the demo)."""

    id: str
    given_name: str
    family_name: str
    birth_date: str | None
    active: bool
    note: str
    contacts: tuple[Contact, ...]
    created_online_by: str | None


class ReferencePractice:
    """What the practice's staff do in the PVS itself: keep patients, record consent decisions."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def add_patient(
        self,
        given_name: str,
        family_name: str,
        birth_date: str | None,
        contacts: tuple[Contact, ...] = (),
        *,
        active: bool = True,
        patient_id: str | None = None,
    ) -> str:
        """birth_date as 'YYYY-MM-DD', 'YYYY-MM' or None (the last two can never be matched)."""
        new_id = patient_id or f"p-{secrets.token_hex(6)}"

        def work(conn: sqlite3.Connection) -> str:
            conn.execute(
                "INSERT INTO patients (id, given_name, family_name, birth_date, active, create_time)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (new_id, given_name, family_name, birth_date, int(active), int(time.time())),
            )
            conn.executemany(
                "INSERT INTO patient_contacts VALUES (?, ?, ?)", [(new_id, c.kind.value, c.value) for c in contacts]
            )
            return new_id

        return self._db.run_sync(work)

    def set_consent(self, patient_id: str, partner_id: str, state: ConsentState) -> None:
        evidence = ConsentEvidence(to_datetime(int(time.time())), ConsentMethod.PAPER, "practice")
        self._db.run_sync(
            lambda conn: write_consent(conn, patient_id, partner_id, state, evidence, ConsentActor.PRACTICE)
        )

    def patient(self, patient_id: str) -> StoredPatient:
        def work(conn: sqlite3.Connection) -> StoredPatient:
            row = conn.execute("SELECT * FROM patients WHERE id = ?", (patient_id,)).fetchone()
            if row is None:
                raise KeyError(patient_id)
            return StoredPatient(
                id=row["id"],
                given_name=row["given_name"],
                family_name=row["family_name"],
                birth_date=row["birth_date"],
                active=bool(row["active"]),
                note=row["note"],
                contacts=_contacts(conn, patient_id),
                created_online_by=row["created_online_by"],
            )

        return self._db.run_sync(work)

    def patient_ids(self) -> list[str]:
        rows = self._db.run_sync(lambda conn: conn.execute("SELECT id FROM patients ORDER BY id").fetchall())
        return [r["id"] for r in rows]

    def count_patients(self) -> int:
        count: int = self._db.run_sync(lambda conn: conn.execute("SELECT COUNT(*) FROM patients").fetchone()[0])
        return count

    def consent_events(self, patient_id: str) -> list[tuple[str, str, str]]:
        rows = self._db.run_sync(
            lambda conn: conn.execute(
                "SELECT partner_id, state, set_by FROM consent_events WHERE patient_id = ? ORDER BY id", (patient_id,)
            ).fetchall()
        )
        return [(r["partner_id"], r["state"], r["set_by"]) for r in rows]
