"""The reference PVS's patient lookup and consent ports, and the practice's own side of them.

Find-or-create runs in one write transaction (SQLite serialises writers), so two identical requests
at the same moment cannot both create: the second sees the first one's new patient and matches it.
A request id already answered returns the first answer; the same id with another request is refused.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
from dataclasses import dataclass
from datetime import date

from otv_sdk.errors import InvalidArgument, NotFound, PermissionDenied
from otv_sdk.matching import Candidate, NormalizedQuery, decide, match_key, new_contacts, normalize_query
from otv_sdk.models import (
    Consent,
    ConsentActor,
    ConsentEvidence,
    ConsentMethod,
    ConsentState,
    Contact,
    ContactKind,
    Patient,
)
from otv_sdk.ports import CallContext, ConsentPort, MatchOutcome, Page, PageRequest, PatientLookupPort, PatientQuery
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


def _patient(conn: sqlite3.Connection, patient_id: str, partner_id: str, shown: tuple[Contact, ...] | None) -> Patient:
    """A patient as this partner may see it: contacts only with consent granted (or the ones it sent)."""
    row = conn.execute("SELECT * FROM patients WHERE id = ?", (patient_id,)).fetchone()
    if shown is None:
        granted = _consent_state(conn, patient_id, partner_id) is ConsentState.GRANTED
        shown = _contacts(conn, patient_id) if granted else ()
    return Patient(
        id=row["id"],
        given_name=row["given_name"],
        family_name=row["family_name"],
        birth_date=_birth(row["birth_date"]),
        contacts=shown,
        created_online=row["created_online_by"] == partner_id,
        create_time=to_datetime(row["create_time"]) if row["create_time"] else None,
    )


def candidates(conn: sqlite3.Connection, query: NormalizedQuery, partner_id: str) -> list[Candidate]:
    """Active patients under the query's match key, with this partner's consent: one index lookup."""
    rows = conn.execute("SELECT * FROM patients WHERE match_key = ? AND active = 1", (query.key,)).fetchall()
    return [
        Candidate(
            patient_id=r["id"],
            given_name=r["given_name"],
            family_name=r["family_name"],
            birth_date=_birth(r["birth_date"]),
            contacts=_contacts(conn, r["id"]),
            active=bool(r["active"]),
            consent=_consent_state(conn, r["id"], partner_id),
        )
        for r in rows
    ]


def _fingerprint(query: PatientQuery) -> str:
    material = [query.given_name, query.family_name, query.birth_date.isoformat()]
    material += [f"{c.kind.value}:{c.value}" for c in query.contacts]
    return hashlib.sha256(json.dumps(material).encode()).hexdigest()


class ReferencePatients(PatientLookupPort, ConsentPort):
    def __init__(self, database: Database) -> None:
        self._db = database
        self.practice = ReferencePractice(database)

    async def find_or_create_patient(self, ctx: CallContext, query: PatientQuery) -> tuple[Patient, MatchOutcome]:
        normalized = normalize_query(query)
        fingerprint = _fingerprint(query)
        partner = ctx.partner_id

        def work(conn: sqlite3.Connection) -> tuple[Patient, MatchOutcome]:
            now = int(time.time())
            if ctx.request_id is not None:
                seen = conn.execute(
                    "SELECT * FROM lookup_requests WHERE partner_id = ? AND request_id = ?", (partner, ctx.request_id)
                ).fetchone()
                if seen is not None:
                    if seen["fingerprint"] != fingerprint:
                        raise InvalidArgument.field("request_id", "was already used for a different request")
                    outcome = MatchOutcome(seen["outcome"])
                    shown = normalized.contacts if outcome is MatchOutcome.CREATED else None
                    return _patient(conn, seen["patient_id"], partner, shown), outcome
            chosen = self.choose(conn, query, normalized, partner)
            if chosen is not None:
                extra = new_contacts(normalized, chosen.contacts)
                if extra:
                    line = f"Online ({partner}, {to_datetime(now):%Y-%m-%d}): " + ", ".join(c.value for c in extra)
                    conn.execute(
                        "UPDATE patients SET note = CASE WHEN note = '' THEN ? ELSE note || char(10) || ? END"
                        " WHERE id = ?",
                        (line, line, chosen.patient_id),
                    )
                patient_id, outcome, shown = chosen.patient_id, MatchOutcome.MATCHED, None
            else:
                patient_id = f"n-{secrets.token_hex(6)}"
                conn.execute(
                    "INSERT INTO patients (id, given_name, family_name, birth_date, match_key, note,"
                    " created_online_by, create_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        patient_id,
                        query.given_name.strip(),
                        query.family_name.strip(),
                        query.birth_date.isoformat(),
                        normalized.key,
                        f"Interessent: online angelegt ({partner})",
                        partner,
                        now,
                    ),
                )
                conn.executemany(
                    "INSERT INTO patient_contacts VALUES (?, ?, ?)",
                    [(patient_id, c.kind.value, c.value) for c in normalized.contacts],
                )
                outcome, shown = MatchOutcome.CREATED, normalized.contacts
            _open_consent(conn, patient_id, partner, now)
            if ctx.request_id is not None:
                conn.execute(
                    "INSERT INTO lookup_requests VALUES (?, ?, ?, ?, ?)",
                    (partner, ctx.request_id, fingerprint, patient_id, outcome.value),
                )
            return _patient(conn, patient_id, partner, shown), outcome

        return await self._db.run(work)

    def choose(
        self, conn: sqlite3.Connection, query: PatientQuery, normalized: NormalizedQuery, partner_id: str
    ) -> Candidate | None:
        """The patient a booking is for, or None for a new one: where a PVS's own matching rules go."""
        return decide(normalized, candidates(conn, normalized, partner_id))

    async def list_shared_patients(self, ctx: CallContext, page: PageRequest) -> Page[Patient]:
        def work(conn: sqlite3.Connection) -> Page[Patient]:
            rows = conn.execute(
                "SELECT p.id FROM consents c JOIN patients p ON p.id = c.patient_id"
                " WHERE c.partner_id = ? AND c.state = 'granted' AND p.active = 1 AND p.id > ?"
                " ORDER BY p.id LIMIT ?",
                (ctx.partner_id, page.page_token, page.page_size + 1),
            ).fetchall()
            items = [_patient(conn, r["id"], ctx.partner_id, None) for r in rows[: page.page_size]]
            more = len(rows) > page.page_size
            return Page(items, items[-1].id if more and items else "")

        return await self._db.run(work)

    async def get_consent(self, ctx: CallContext, patient_id: str) -> Consent:
        return await self._db.run(lambda conn: _read_consent(conn, patient_id, ctx.partner_id))

    async def record_consent(
        self, ctx: CallContext, patient_id: str, state: ConsentState, evidence: ConsentEvidence | None
    ) -> Consent:
        """What a partner may record: the patient's grant, given in its own booking flow."""
        if state is not ConsentState.GRANTED:
            raise PermissionDenied("only the practice can deny or revoke consent")
        if evidence is None:
            raise InvalidArgument.field("evidence", "is required when recording a grant")

        def work(conn: sqlite3.Connection) -> Consent:
            current = _read_consent(conn, patient_id, ctx.partner_id)
            if current.state is ConsentState.DENIED:
                raise NotFound.field("name", "no such patient")
            write_consent(conn, patient_id, ctx.partner_id, state, evidence, ConsentActor.PARTNER)
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
        key = match_key(family_name, _birth(birth_date))

        def work(conn: sqlite3.Connection) -> str:
            conn.execute(
                "INSERT INTO patients (id, given_name, family_name, birth_date, match_key, active, create_time)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (new_id, given_name, family_name, birth_date, key, int(active), int(time.time())),
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
