"""Find-or-create decisions: which existing patient a booking is for, or none (create a new one).

The rule from the seed documents, graded as FHIR `$match` would:
1. Candidates are active patients whose family name, first names (see `names.py`) and full birth
   date match. A patient stored without a birth date, or with only year and month, is never one.
2. Exactly one candidate: that patient (certain).
3. Several: keep those sharing a contact with the booking (phone as E.164, e-mail folded). If the
   booking has no contacts, or not exactly one is left, nobody is certain.
4. Consent comes last: if the chosen patient denied sharing with this partner, the decision is
   "none", exactly as if the patient did not exist. Filtering earlier would change which other
   candidate is chosen, and so reveal the denied patient.
"none" means: create a new patient. An adapter finds candidates with `match_key` (family name +
birth date), so the decision costs one index lookup however many patients the practice has.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from otv_rules.contact_values import ContactValueError, normalize_email, normalize_phone
from otv_rules.names import family_key, given_match, given_tokens
from otv_sdk.errors import InvalidArgument
from otv_sdk.models import ConsentState, Contact, ContactKind
from otv_sdk.ports import PatientQuery

__all__ = ["Candidate", "NormalizedQuery", "decide", "match_key", "new_contacts", "normalize_query"]


def match_key(family_name: str, birth_date: date | None) -> str | None:
    """The index key under which a patient can be found; None for one who cannot be matched."""
    key = family_key(family_name)
    if birth_date is None or not key:
        return None
    return f"{key}|{birth_date.isoformat()}"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A patient as the matcher sees it, with this partner's consent state."""

    patient_id: str
    given_name: str
    family_name: str
    birth_date: date | None
    contacts: tuple[Contact, ...]
    active: bool
    consent: ConsentState


# A contact value as typed, told apart only by whether it is read as an e-mail or a phone number.
_Spelling = tuple[bool, str]


@dataclass(frozen=True, slots=True)
class NormalizedQuery:
    given: tuple[str, ...]
    family: str
    birth_date: date
    phones: frozenset[str]
    emails: frozenset[str]
    contacts: tuple[Contact, ...]  # as normalised values, for storing
    # The booking's contacts as typed, with their normalised values: a candidate's contact spelled
    # the same way (the common case, a patient booking with what the practice has) is not parsed again.
    spellings: Mapping[_Spelling, str] = field(default_factory=dict, compare=False)

    @property
    def key(self) -> str:
        return f"{self.family}|{self.birth_date.isoformat()}"


def _spelling(contact: Contact) -> _Spelling:
    return contact.kind is ContactKind.EMAIL, contact.value


def _normalized_value(contact: Contact, known: Mapping[_Spelling, str]) -> str:
    """The comparable value; ContactValueError if it cannot be read as its kind."""
    spelling = _spelling(contact)
    value = known.get(spelling)
    if value is None:
        value = normalize_email(contact.value) if spelling[0] else normalize_phone(contact.value)
    return value


def normalize_query(query: PatientQuery) -> NormalizedQuery:
    """Normalise a booking's patient data; a bad contact is INVALID_ARGUMENT naming contacts[i].value."""
    given, family = given_tokens(query.given_name), family_key(query.family_name)
    if not given:
        raise InvalidArgument.field("given_name", "has no letters once titles are removed")
    if not family:
        raise InvalidArgument.field("family_name", "has no letters once titles and particles are removed")
    contacts: list[Contact] = []
    spellings: dict[_Spelling, str] = {}
    for index, contact in enumerate(query.contacts):
        try:
            value = _normalized_value(contact, spellings)
        except ContactValueError as error:
            raise InvalidArgument.field(f"contacts[{index}].value", str(error)) from None
        spellings[_spelling(contact)] = value
        contacts.append(Contact(contact.kind, value))
    return NormalizedQuery(
        given=given,
        family=family,
        birth_date=query.birth_date,
        phones=frozenset(c.value for c in contacts if c.kind is not ContactKind.EMAIL),
        emails=frozenset(c.value for c in contacts if c.kind is ContactKind.EMAIL),
        contacts=tuple(dict.fromkeys(contacts)),
        spellings=spellings,
    )


def _comparable(contacts: Iterable[Contact], query: NormalizedQuery) -> tuple[set[str], set[str]]:
    """A stored patient's contacts in comparable form; values that cannot be read are ignored."""
    phones: set[str] = set()
    emails: set[str] = set()
    for contact in contacts:
        try:
            value = _normalized_value(contact, query.spellings)
        except ContactValueError:
            continue
        (emails if contact.kind is ContactKind.EMAIL else phones).add(value)
    return phones, emails


def _shares_contact(candidate: Candidate, query: NormalizedQuery) -> bool:
    phones, emails = _comparable(candidate.contacts, query)
    return bool(phones & query.phones or emails & query.emails)


def decide(query: NormalizedQuery, candidates: Iterable[Candidate]) -> Candidate | None:
    """The patient the booking is for, or None: create a new patient."""
    pool = [
        c
        for c in candidates
        if c.active
        and c.birth_date == query.birth_date
        and family_key(c.family_name) == query.family
        and given_match(given_tokens(c.given_name), query.given)
    ]
    if len(pool) > 1:
        pool = [c for c in pool if _shares_contact(c, query)] if (query.phones or query.emails) else []
    chosen = pool[0] if len(pool) == 1 else None
    if chosen is not None and chosen.consent is ConsentState.DENIED:
        return None
    return chosen


def new_contacts(query: NormalizedQuery, patient_contacts: Sequence[Contact]) -> tuple[Contact, ...]:
    """Contacts from the booking that the patient's record does not have (for a note, never stored over)."""
    phones, emails = _comparable(patient_contacts, query)
    return tuple(c for c in query.contacts if c.value not in (emails if c.kind is ContactKind.EMAIL else phones))
