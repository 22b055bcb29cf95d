"""PatientLookupService for one practice: the find-or-create decision, made by the gateway.

The PVS hands over the patients born on the booking's birth date, with names, contacts, whether the
record is active and the calling partner's consent (`PatientDataPort`); the rule is
`otv_rules.matching`, the same for every practice. A match with contacts the record lacks gets a
note line for the practice (never stored over its data); no match creates an Interessent.

Two identical bookings at the same moment must not create two patients, on one replica or several.
Within a replica they are serialised per match key. Across replicas the creation's idempotency key
is derived from what the decision saw (the normalised identity and the candidates it rejected), so
two replicas deciding the same thing ask the PVS for the same creation, and the PVS's idempotency
(`CreatePatient.request_id`) makes it one patient. A partner's own request_id is remembered in the
state store: a retry returns the first answer, the same id with another request is refused.

Each answer also keeps the patient as the partner sent it (names, birth date, contacts, gender,
address), sealed, per practice, PVS patient and partner, in the same store transaction: the practice
inbox shows staff exactly what came in (`details_key`, `read_sent`). Bookings made with the
patient's details at a practice without patient lookup keep theirs in the same table
(`store_sent`), under an id the gateway made up for that booking (booking.py).

Extra details (gender, postal address) are never matched on and never written over the PVS's own
values: a new patient gets them in its note, a matched one a note line of their own when they
differ from what this partner sent for the patient before (`extras_line`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any
from weakref import WeakValueDictionary

from gateway.encryption import FieldCipher
from gateway.state_store import StateStore, Tx
from otv_rules.matching import Candidate, NormalizedQuery, decide, new_contacts, normalize_query
from otv_sdk.errors import InvalidArgument
from otv_sdk.models import (
    ConsentState,
    Contact,
    ContactKind,
    Gender,
    NewPatient,
    Patient,
    PatientRecord,
    PostalAddress,
)
from otv_sdk.ports import CallContext, MatchOutcome, Page, PageRequest, PatientDataPort, PatientLookupPort, PatientQuery
from otv_sdk.timeline import to_datetime

__all__ = [
    "GENDER_LABELS",
    "PatientMatcher",
    "SentDetails",
    "SentPatient",
    "details_key",
    "extras_line",
    "read_details",
    "read_sent",
    "store_sent",
]

_METHOD = "FindOrCreatePatient"
_DETAILS_COLUMN = "patient_details.details"
SentDetails = tuple[str, str, str | None, tuple[Contact, ...]]  # given, family, birth date (ISO), contacts


def details_key(practice_id: str, pvs_patient_id: str) -> str:
    """The stored key of a PVS patient's details: a digest, so the table names no PVS id."""
    return hashlib.sha256(f"otv-patient-details\0{practice_id}\0{pvs_patient_id}".encode()).hexdigest()


# How extra details read in the PVS's notes (German, as staff read them).
GENDER_LABELS = {
    Gender.FEMALE: "weiblich",
    Gender.MALE: "männlich",
    Gender.DIVERSE: "divers",
    Gender.UNDISCLOSED: "ohne Angabe",
}


@dataclass(frozen=True, slots=True)
class SentPatient:
    """The patient as a partner sent it (FindOrCreatePatient, or a booking with details)."""

    given_name: str
    family_name: str
    birth_date: date | None
    contacts: tuple[Contact, ...] = ()
    gender: Gender | None = None
    address: PostalAddress | None = None
    note: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "given": self.given_name,
                "family": self.family_name,
                "birth": self.birth_date.isoformat() if self.birth_date else None,
                "contacts": [[c.kind.value, c.value] for c in self.contacts],
                "gender": self.gender.value if self.gender else None,
                "address": _address_parts(self.address),
                "note": self.note,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> SentPatient:
        data: dict[str, Any] = json.loads(text)
        address = data.get("address")
        return cls(
            given_name=str(data["given"]),
            family_name=str(data["family"]),
            birth_date=date.fromisoformat(data["birth"]) if data.get("birth") else None,
            contacts=tuple(Contact(ContactKind(kind), value) for kind, value in data["contacts"]),
            gender=Gender(data["gender"]) if data.get("gender") else None,
            address=PostalAddress(*address) if address else None,
            note=str(data.get("note") or ""),
        )


def _address_parts(address: PostalAddress | None) -> list[str] | None:
    if address is None:
        return None
    return [address.street, address.postal_code, address.locality, address.country]


def extras_line(gender: Gender | None, address: PostalAddress | None) -> str:
    """The extra details as one note text, e.g. "Geschlecht: weiblich; Adresse: ..."; empty if none."""
    parts = []
    if gender is not None:
        parts.append(f"Geschlecht: {GENDER_LABELS[gender]}")
    if address is not None:
        parts.append(f"Adresse: {address.one_line()}")
    return "; ".join(parts)


def read_sent(tx: Tx, cipher: FieldCipher, practice_id: str, patient_id: str, partner_id: str) -> SentPatient | None:
    """The patient as `partner_id` last sent it to this practice, or None if it never did."""
    row = tx.one(
        "SELECT details FROM patient_details WHERE practice = ? AND patient = ? AND partner = ?",
        (practice_id, details_key(practice_id, patient_id), partner_id),
    )
    if row is None:
        return None
    return SentPatient.from_json(cipher.open(str(row["details"]), _DETAILS_COLUMN))


def store_sent(
    tx: Tx, cipher: FieldCipher, practice_id: str, patient_id: str, partner_id: str, sent: SentPatient, now: int
) -> None:
    """Keep (or replace) the patient as `partner_id` sent it, sealed."""
    sealed = cipher.seal(sent.to_json(), _DETAILS_COLUMN)
    tx.execute(
        "INSERT INTO patient_details (practice, patient, partner, details, update_s)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (practice, patient, partner)"
        " DO UPDATE SET details = excluded.details, update_s = excluded.update_s",
        (practice_id, details_key(practice_id, patient_id), partner_id, sealed, now),
    )


def read_details(
    tx: Tx, cipher: FieldCipher, practice_id: str, pvs_patient_id: str, partner_id: str
) -> SentDetails | None:
    """Names, birth date and contacts as `partner_id` last sent them (see `read_sent` for all)."""
    sent = read_sent(tx, cipher, practice_id, pvs_patient_id, partner_id)
    if sent is None:
        return None
    birth = sent.birth_date.isoformat() if sent.birth_date else None
    return sent.given_name, sent.family_name, birth, sent.contacts


def _candidate(record: PatientRecord) -> Candidate:
    return Candidate(
        patient_id=record.id,
        given_name=record.given_name,
        family_name=record.family_name,
        birth_date=record.birth_date,
        contacts=record.contacts,
        active=record.active,
        consent=record.consent,
    )


def _settled(task: asyncio.Task[Any]) -> None:
    """Marks a side read's failure as seen: the call already failed with its own error."""
    if not task.cancelled():
        task.exception()


def _digest(material: object) -> str:
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _patient(ctx: CallContext, record: PatientRecord, sent: tuple[Contact, ...] | None) -> Patient:
    """The patient as this partner may see it: contacts only with consent granted, or the ones it sent."""
    if sent is None:
        sent = record.contacts if record.consent is ConsentState.GRANTED else ()
    return Patient(
        id=record.id,
        given_name=record.given_name,
        family_name=record.family_name,
        birth_date=record.birth_date,
        contacts=sent,
        created_online=record.created_online_by == ctx.partner_id,
        create_time=record.create_time,
    )


class PatientMatcher(PatientLookupPort):
    def __init__(
        self,
        practice_id: str,
        data: PatientDataPort,
        store: StateStore | None = None,
        clock: Callable[[], float] = time.time,
        *,
        cipher: FieldCipher | None = None,
    ) -> None:
        self._cipher = cipher
        self._practice = practice_id
        self._data = data
        self._store = store
        self._clock = clock
        self._locks: WeakValueDictionary[str, asyncio.Lock] = WeakValueDictionary()

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock

    async def find_or_create_patient(self, ctx: CallContext, query: PatientQuery) -> tuple[Patient, MatchOutcome]:
        normalized = normalize_query(query)
        fingerprint = _digest(
            [self._practice, query.given_name, query.family_name, query.birth_date.isoformat()]
            + [f"{c.kind.value}:{c.value}" for c in query.contacts]
        )
        async with self._lock(normalized.key):
            # The partner's earlier answer (a retry) is read from the store while the PVS reads the
            # candidates: one task beside this one (gather would make two and a future).
            reading = self._start_seen(ctx, fingerprint)
            try:
                records = await self._data.list_patients_born_on(ctx, query.birth_date)
            except BaseException:
                if reading is not None:
                    reading.add_done_callback(_settled)
                    reading.cancel()
                raise
            seen = None if reading is None else await reading
            if seen is not None:
                patient_id, outcome = seen
                earlier = next((r for r in records if r.id == patient_id and r.active), None)
                if earlier is not None:  # else the practice archived or merged it since: decide afresh
                    await self._remember(ctx, fingerprint, earlier.id, None, query)
                    return self._shown(ctx, earlier, MatchOutcome(outcome), normalized)
            chosen = decide(normalized, [_candidate(r) for r in records])
            if chosen is not None:
                record = next(r for r in records if r.id == chosen.patient_id)
                await self._note_new_contacts(ctx, normalized, record)
                await self._note_extras(ctx, query, record)
                answer = self._shown(ctx, record, MatchOutcome.MATCHED, normalized)
            else:
                creation = _digest([self._practice, normalized.key, normalized.given, sorted(r.id for r in records)])
                note = f"Interessent: online angelegt ({ctx.partner_id})"
                extras = extras_line(query.gender, query.address)
                new = NewPatient(
                    given_name=query.given_name.strip(),
                    family_name=query.family_name.strip(),
                    birth_date=query.birth_date,
                    contacts=normalized.contacts,
                    note=f"{note}; {extras}" if extras else note,
                )
                record = await self._data.create_patient(ctx, new, creation)
                answer = self._shown(ctx, record, MatchOutcome.CREATED, normalized)
            await self._remember(ctx, fingerprint, answer[0].id, answer[1], query)
            return answer

    async def _note_new_contacts(self, ctx: CallContext, query: NormalizedQuery, record: PatientRecord) -> None:
        extra = new_contacts(query, record.contacts)
        if not extra:
            return
        today = to_datetime(int(self._clock()))
        line = f"Online ({ctx.partner_id}, {today:%Y-%m-%d}): " + ", ".join(c.value for c in extra)
        # The same line for the same patient on the same day is one note, however often it is retried.
        await self._data.append_patient_note(ctx, record.id, line, _digest([self._practice, record.id, line]))

    async def _note_extras(self, ctx: CallContext, query: PatientQuery, record: PatientRecord) -> None:
        """Gender and address of a matched patient as a note line of their own (the PVS keeps its
        own values); not again while they are what this partner sent for the patient before."""
        if query.gender is None and query.address is None:
            return
        if self._store is not None and self._cipher is not None:
            cipher = self._cipher
            before = await self._store.run(
                lambda tx: read_sent(tx, cipher, self._practice, record.id, ctx.partner_id), durable=False
            )
            if before is not None and (before.gender, before.address) == (query.gender, query.address):
                return
        today = to_datetime(int(self._clock()))
        line = f"Online ({ctx.partner_id}, {today:%Y-%m-%d}): {extras_line(query.gender, query.address)}"
        await self._data.append_patient_note(ctx, record.id, line, _digest([self._practice, record.id, line]))

    def _shown(
        self, ctx: CallContext, record: PatientRecord, outcome: MatchOutcome, query: NormalizedQuery
    ) -> tuple[Patient, MatchOutcome]:
        sent = query.contacts if outcome is MatchOutcome.CREATED else None
        return _patient(ctx, record, sent), outcome

    def _start_seen(self, ctx: CallContext, fingerprint: str) -> asyncio.Task[tuple[str, str] | None] | None:
        """The store read of `_seen` under way, or None when there is no request id to look up."""
        if self._store is None or ctx.request_id is None:
            return None
        return asyncio.ensure_future(self._seen(self._store, ctx, ctx.request_id, fingerprint))

    async def _seen(
        self, store: StateStore, ctx: CallContext, request_id: str, fingerprint: str
    ) -> tuple[str, str] | None:
        """The patient and outcome this partner's request id was answered with, if it was."""

        def read(tx: Tx) -> tuple[str, str] | None:
            row = tx.one(
                "SELECT method, fingerprint, result FROM requests WHERE partner = ? AND request_id = ?",
                (ctx.partner_id, request_id),
            )
            if row is None:
                return None
            if row["method"] != _METHOD or row["fingerprint"] != fingerprint:
                raise InvalidArgument.field("request_id", "was already used for a different request")
            stored = json.loads(str(row["result"]))
            return str(stored["patient"]), str(stored["outcome"])

        return await store.run(read)  # a read: nothing to commit, so no durability to trade away

    async def _remember(
        self, ctx: CallContext, fingerprint: str, patient_id: str, outcome: MatchOutcome | None, query: PatientQuery
    ) -> None:
        """In one transaction: the answer to this request_id (unless `outcome` is None, a replay),
        and the patient as the partner sent it, for the practice inbox (sealed)."""
        request_id = ctx.request_id if outcome is not None else None
        if self._store is None or (request_id is None and self._cipher is None):
            return
        result = json.dumps({"patient": patient_id, "outcome": outcome.value if outcome else ""})
        now = int(self._clock())
        sent = SentPatient(
            given_name=query.given_name.strip(),
            family_name=query.family_name.strip(),
            birth_date=query.birth_date,
            contacts=query.contacts,
            gender=query.gender,
            address=query.address,
        )
        cipher = self._cipher

        def write(tx: Tx) -> None:
            if cipher is not None:
                store_sent(tx, cipher, self._practice, patient_id, ctx.partner_id, sent, now)
            if request_id is None:
                return
            # Another replica may have answered the same retry first: its answer stands.
            tx.execute(
                "INSERT INTO requests (partner, request_id, method, fingerprint, result, create_s)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (partner, request_id) DO NOTHING",
                (ctx.partner_id, request_id, _METHOD, fingerprint, result, now),
            )

        await self._store.run(write)

    async def list_shared_patients(self, ctx: CallContext, page: PageRequest) -> Page[Patient]:
        records = await self._data.list_consented_patients(ctx, page.page_token, page.page_size + 1)
        shown = [
            _patient(ctx, r, None) for r in records[: page.page_size] if r.active and r.consent is ConsentState.GRANTED
        ]
        more = len(records) > page.page_size and bool(records)
        return Page(shown, records[page.page_size - 1].id if more and page.page_size else "")
